"""``lbdoctor diagnose``'s probe results: read from lbdoctor's cluster role, through the API server.

Pod IPs are rarely reachable from a laptop, but lbdoctor's node agents probe every target where it runs, and
its cluster role gathers what they see (``/api/v1/probes``, exporter/exchange.py). ``diagnose`` finds the
cluster role's Service by the chart's labels in any namespace (or ``--cluster-role NAMESPACE/NAME``) and reads
it through the API server's service proxy (``/api/v1/namespaces/NS/services/SCHEME:NAME:PORT/proxy/…``), with
the user's own credentials: RBAC must grant ``get`` on ``services/proxy`` in that namespace. Every way this can
fail ends in one line saying why and what to do; the answer is bounded and validated like any peer's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from exporter.checks.health_probe import describe
from exporter.exchange import AgentState, AgentView, DocumentError, agent_findings, parse_cluster_document
from exporter.kube.client import ApiError, KubeClient
from exporter.lb.targets import TargetStatus
from exporter.lb.thresholds import LbState
from exporter.model.results import Check, CheckResult, Status
from exporter.report import iso

CLUSTER_ROLE_SELECTOR = "app.kubernetes.io/name=lbdoctor,app.kubernetes.io/component=cluster"
PORT_NAME = "http-metrics"  # the chart's port name; else the Service's first port
MAX_BYTES = 256 * 1024 * 1024  # 100,000 targets answer about 40 MB (less, gzipped, on the wire)
HOW = "lbdoctor's cluster role, read through the API server (service proxy; RBAC: get services/proxy in its namespace)"


@dataclass(frozen=True)
class ProbeReport:
    """What diagnose found of the node agents' probes."""

    services: tuple[str, ...] = ()  # NAMESPACE/NAME of each cluster role read
    read_at: float = 0.0
    generated_at: float | None = None  # the cluster role's answer (the newest, with several)
    agents: tuple[AgentView, ...] = ()
    targets: tuple[TargetStatus, ...] = ()
    findings: tuple[CheckResult, ...] = ()  # the agents' not-ok results, as the cluster role gathered them
    error: str | None = None  # why the probes are missing (or, with several cluster roles, one that failed)

    @property
    def found(self) -> bool:
        return bool(self.services)

    def age(self) -> float | None:
        return None if self.generated_at is None else max(0.0, self.read_at - self.generated_at)


async def read(
    client: KubeClient, *, service: str | None, namespace: str | None, now: float, timeout: float = 60.0
) -> ProbeReport:
    """The node agents' probes from every cluster role found (``service``: NAMESPACE/NAME, else by labels);
    ``namespace`` narrows what the cluster role sends (None: all)."""
    try:
        services = await _services(client, service)
    except _Why as why:
        return ProbeReport(read_at=now, error=str(why))
    read: list[str] = []
    failures: list[str] = []
    agents: dict[str, AgentView] = {}
    targets: list[TargetStatus] = []
    findings: list[CheckResult] = []
    generated: list[float] = []
    for found in services:
        meta = found.get("metadata") or {}
        where = f"{meta.get('namespace')}/{meta.get('name')}"
        try:
            probes = await _probes(client, found, namespace, now, timeout)
        except _Why as why:
            failures.append(str(why))
            continue
        read.append(where)
        for agent in probes.agents:
            agents.setdefault(agent.url, agent)
        targets += probes.targets
        findings += probes.results
        if probes.generated_at is not None:
            generated.append(probes.generated_at)
    return ProbeReport(
        services=tuple(read),
        read_at=now,
        generated_at=max(generated) if generated else None,
        agents=tuple(agents.values()),
        targets=tuple(targets),
        findings=tuple(findings),
        error="; ".join(failures) or None,
    )


class _Why(Exception):
    """Why the probes could not be read: one line for the user."""


async def _services(client: KubeClient, service: str | None) -> list[dict[str, Any]]:
    if service is not None:
        namespace, _, name = service.partition("/")
        try:
            return [await client.get(f"/api/v1/namespaces/{namespace}/services/{name}", timeout=15)]
        except ApiError as error:
            if error.status == 404:
                raise _Why(f"no Service {service} (--cluster-role)") from None
            raise _Why(f"cannot read the Service {service}: {error.status} {error.reason}") from None
    try:
        listed = await client.get("/api/v1/services", {"labelSelector": CLUSTER_ROLE_SELECTOR}, timeout=30)
    except ApiError as error:
        if error.status == 403:
            raise _Why(
                "RBAC does not let you list Services in all namespaces to find lbdoctor's cluster role; name it "
                "with --cluster-role NAMESPACE/NAME"
            ) from None
        raise _Why(f"cannot list Services to find lbdoctor's cluster role: {error.status} {error.reason}") from None
    items = [item for item in listed.get("items") or [] if isinstance(item, dict)]
    if not items:
        raise _Why(
            f"no lbdoctor cluster role in the cluster (no Service labelled {CLUSTER_ROLE_SELECTOR} in any "
            "namespace): install the Helm chart, or name its Service with --cluster-role NAMESPACE/NAME"
        )
    return sorted(
        items, key=lambda s: ((s.get("metadata") or {}).get("namespace", ""), (s.get("metadata") or {}).get("name", ""))
    )


def proxy_path(service: dict[str, Any]) -> str:
    """``/api/v1/namespaces/NS/services/SCHEME:NAME:PORT/proxy``: the chart's port (by name), https when the
    port says so (``appProtocol``)."""
    meta = service.get("metadata") or {}
    ports = [p for p in (service.get("spec") or {}).get("ports") or [] if isinstance(p, dict)]
    port = next((p for p in ports if p.get("name") == PORT_NAME), ports[0] if ports else {})
    scheme = "https" if str(port.get("appProtocol") or "").lower() == "https" else "http"
    which = port.get("name") or port.get("port") or ""
    return f"/api/v1/namespaces/{meta.get('namespace')}/services/{scheme}:{meta.get('name')}:{which}/proxy"


async def _probes(
    client: KubeClient, service: dict[str, Any], namespace: str | None, now: float, timeout: float
) -> Any:
    meta = service.get("metadata") or {}
    where = f"{meta.get('namespace')}/{meta.get('name')}"
    query = {"namespace": namespace} if namespace else {}
    try:
        body = await client.get_bounded(
            f"{proxy_path(service)}/api/v1/probes", query, max_bytes=MAX_BYTES, timeout=timeout
        )
    except ApiError as error:
        raise _Why(_explain(error, where, str(meta.get("namespace")))) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        raise _Why(f"lbdoctor's cluster role {where} did not answer through the API server: {error}") from None
    try:
        return parse_cluster_document(json.loads(body), now)
    except (ValueError, DocumentError) as error:
        raise _Why(f"lbdoctor's cluster role {where} answered something else: {error}") from None


def _explain(error: ApiError, where: str, namespace: str) -> str:
    said = " ".join((error.message or error.reason).split())[:200]  # a proxied body may be anything: one line
    if error.status == 403:
        return (
            f"RBAC does not let you read lbdoctor's cluster role {where} through the API server: ask for get on "
            f"services/proxy in namespace {namespace} (docs/diagnose.md)"
        )
    if error.status == 401:
        return (
            f"lbdoctor's cluster role {where} asks for credentials (basic auth in its web config), which the API "
            "server's proxy does not pass on"
        )
    if error.status == 404 and error.reason != "NotFound":
        return f"lbdoctor's cluster role {where} is older than this diagnose (no /api/v1/probes)"
    if error.status in (502, 503):
        return f"the API server could not reach lbdoctor's cluster role {where}: {said}"
    return f"reading lbdoctor's cluster role {where} through the API server: {error.status} {said}"


def results(report: ProbeReport) -> tuple[CheckResult, ...]:
    """The probe results diagnose reports: the agents' findings, one ``unknown`` per node whose agent does not
    answer, and an ``ok`` for every target its agent sees passing (the agents send only what does not pass)."""
    found = [*agent_findings(report.agents), *report.findings]
    judged = {(r.object, r.target, r.node) for r in report.findings if r.check is Check.HEALTH_PROBE}
    answering = {agent.node for agent in report.agents if agent.state is AgentState.OK}
    for status in report.targets:
        target, outcome = status.target, status.outcome
        if (target.owner, target.ref, target.node) in judged or target.node not in answering:
            continue
        if outcome is None or not outcome.success or status.health.state is not LbState.HEALTHY:
            continue
        where = f"pod {target.pod}" if target.pod else f"node {target.node} through kube-proxy, as an instance target"
        found.append(
            CheckResult(
                Check.HEALTH_PROBE,
                Status.OK,
                None,
                target.owner,
                f"{describe(target)} ({where}, {target.lb.upper()} health check): {outcome.detail}; the LB counts it "
                f"healthy (the node agent on {target.node})",
                target=target.ref,
                node=target.node,
            )
        )
    return tuple(found)


def not_run_text(report: ProbeReport, check: Check) -> str:
    """The runbook table's line for a node-agent step without results."""
    if not report.found:
        return f"needs {HOW}: {report.error}"
    answering = sum(1 for agent in report.agents if agent.state is AgentState.OK)
    return (
        f"nothing failing on the {answering} node agent(s) that answer ({len(report.agents)} in all); "
        "lbdoctor's cluster role passes on only what does not pass"
        if check is Check.KUBE_PROXY
        else f"no target on the {answering} node agent(s) that answer"
    )


def summary_line(report: ProbeReport) -> str:
    """Where the probes came from and how old they are, for the table."""
    if not report.found:
        return f"Probes: not shown. {report.error}"
    counts = {state: sum(1 for a in report.agents if a.state is state) for state in AgentState}
    agents = ", ".join(f"{n} {state.value}" for state, n in counts.items() if n)
    # How old the probes are is the node agents' answers' age, by the cluster role's clock (its own answer is
    # made when asked: its age by this machine's clock would only be the clocks' difference).
    line = (
        f"Probes: from lbdoctor's cluster role {', '.join(report.services)} through the API server: "
        f"{len(report.targets):,} targets seen by "
        f"{len(report.agents)} node agent(s) ({agents or 'none'})"
    )
    ages = [age for a in report.agents if a.state is AgentState.OK and (age := a.age(report.read_at)) is not None]
    line += f", their answers at most {max(ages):.0f} s old." if ages else "."
    not_ok = [a for a in report.agents if a.state is not AgentState.OK]
    if not_ok:
        line += " Not answering: " + ", ".join(
            f"{a.node or a.url} ({a.state.value}{_age(a, report.read_at)})" for a in not_ok[:5]
        )
        line += f" and {len(not_ok) - 5} more." if len(not_ok) > 5 else "."
    if report.error:
        line += f" Also: {report.error}"
    return line


def _age(agent: AgentView, now: float) -> str:
    age = agent.age(now)
    return "" if age is None else f", last answer {age:.0f} s old"


def to_json(report: ProbeReport) -> dict[str, Any]:
    """The ``probes`` section of ``lbdoctor.diagnosis/v1``."""
    now = report.read_at
    age = report.age()
    return {
        "source": [
            {"namespace": where.split("/", 1)[0], "service": where.split("/", 1)[1], "via": "service proxy"}
            for where in report.services
        ],
        "generated_at": iso(report.generated_at) if report.generated_at is not None else None,
        "age_seconds": None if age is None else round(age, 1),
        "agents": [
            {
                "node": agent.node,
                "state": agent.state.value,
                "age_seconds": None if (seen := agent.age(now)) is None else round(seen, 1),
                "targets": len(agent.targets),
                "error": agent.error,
            }
            for agent in report.agents
        ],
        "targets": len(report.targets),
        "error": report.error,
    }
