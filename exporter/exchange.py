"""The compact exchange between the roles: ``/api/v1/probes``, schema ``lbdoctor.probes/v1``.

A node agent answers with what the cluster role needs to show its probes and link causes across roles, and
nothing that changes at every probe:

- its targets' states as compact rows (the health check as the load balancer sends it, the predicted state,
  the transitions, the last probe's outcome; not its time, its duration or the streaks);
- the failing, warning and unknown results of the checks only node agents run (``health_probe``,
  ``kube_proxy``): the cluster role runs every other check itself.

The answer carries an ETag. A reader that sends it back (``If-None-Match``) gets ``304 Not Modified`` while
the targets' states and the results' findings are the same; a message that changes with time alone (a
kube-proxy sync "N s ago") is refreshed at most every ``MESSAGE_REFRESH`` seconds. The cluster role answers
the same path with every agent's rows and results and each agent's state and age, for ``lbdoctor diagnose``
(which reaches it through the API server's service proxy).

Building is pure; reading (with trust rules, size caps and conditional requests) is ``exporter.agents``.
"""

from __future__ import annotations

import enum
import gzip
import hashlib
import json
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from exporter.checks.registry import Role, runs_in
from exporter.lb.targets import TargetStatus
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, Status
from exporter.report import iso, parse_targets, results_from_json, results_json, targets_json

PROBES_SCHEMA = "lbdoctor.probes/v1"
MESSAGE_REFRESH = 60.0  # seconds a changed message alone may wait before an unchanged state is sent again
GZIP_OVER = 1024  # bodies at least this long are gzipped for readers that accept it

# The checks only node agents run: their results are what the cluster role cannot produce itself.
NODE_ONLY = frozenset(check for check in Check if not runs_in(check, Role.CLUSTER))
EXPORTED_STATUSES = frozenset({Status.FAIL, Status.WARN, Status.UNKNOWN})


def exported(results: Iterable[CheckResult]) -> tuple[CheckResult, ...]:
    """The results a node agent sends: not ok, of the checks only node agents run."""
    return tuple(r for r in results if r.check in NODE_ONLY and r.status in EXPORTED_STATUSES)


class AgentState(enum.StrEnum):
    OK = "ok"  # the last read succeeded (200, or 304: nothing changed)
    STALE = "stale"  # the last read failed: what it said before is shown, marked with its age
    UNREACHABLE = "unreachable"  # no answer for longer than the keep window (or never): nothing shown
    GONE = "gone"  # its pod went away: shown until the keep window passes


@dataclass(frozen=True)
class AgentView:
    """What the cluster role knows of one node agent."""

    node: str  # the node it speaks for; empty until an agent configured by URL first answered
    url: str
    state: AgentState
    read_at: float | None  # wall-clock time of the last successful read (200 or 304)
    changed_at: float | None  # when the agent's answer last changed, as the agent says
    ready: bool
    error: str | None  # why the last read failed, one line
    targets: tuple[TargetStatus, ...] = ()
    results: tuple[CheckResult, ...] = ()

    def age(self, now: float) -> float | None:
        return None if self.read_at is None else max(0.0, now - self.read_at)

    @property
    def shows(self) -> bool:
        """Whether its targets and results are shown (fresh or, marked, stale)."""
        return self.state in (AgentState.OK, AgentState.STALE, AgentState.GONE) and self.read_at is not None


def agent_findings(agents: Sequence[AgentView]) -> tuple[CheckResult, ...]:
    """An ``unknown`` ``health_probe`` result per node whose agent is not answering: lbdoctor cannot see its
    probes there, which must never read as "nothing fails". The age is not in the message (it would change
    at every read); the agents' list and the page carry it."""
    found = []
    for agent in agents:
        if agent.state is AgentState.OK or not agent.node:
            continue
        why = f" ({agent.error})" if agent.error else ""
        if agent.state is AgentState.GONE:
            said = f"the node agent's pod on node {agent.node} went away; its last answer is shown until it is dropped"
            remedy = "nothing to do if the node left the cluster; otherwise see why the DaemonSet's pod is gone"
        elif agent.state is AgentState.STALE:
            said = f"the node agent on node {agent.node} stopped answering{why}; its last answer is shown, marked stale"
            remedy = _AGENT_REMEDY
        else:
            said = f"the node agent on node {agent.node} does not answer{why}: its probes are not seen"
            remedy = _AGENT_REMEDY
        found.append(
            CheckResult(
                Check.HEALTH_PROBE,
                Status.UNKNOWN,
                Reason.NODE_AGENT_UNREACHABLE,
                ObjectRef("Node", "", agent.node),
                said,
                remedy,
                node=agent.node,
            )
        )
    return tuple(found)


_AGENT_REMEDY = (
    "kubectl -n <lbdoctor's namespace> get pods -o wide --field-selector spec.nodeName=<node> for the node agent's "
    "pod and its events; the cluster role reads it at <node IP>:<node_agent_port> (a NetworkPolicy or a host "
    "firewall in between, a web config the peer_* settings do not match)"
)


def agents_json(agents: Sequence[AgentView], now: float) -> list[dict[str, Any]]:
    return [
        {
            "node": agent.node,
            "url": agent.url,
            "state": agent.state.value,
            "ready": agent.ready,
            "read_at": iso(agent.read_at) if agent.read_at is not None else None,
            "age_seconds": None if (age := agent.age(now)) is None else round(age, 1),
            "changed_at": iso(agent.changed_at) if agent.changed_at is not None else None,
            "error": agent.error,
            "targets": len(agent.targets),
        }
        for agent in agents
    ]


# ---- the node agent's answer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    body: bytes
    gzipped: bytes | None  # None: too short to be worth it
    etag: str  # a weak validator: the gzipped and the plain body are the same representation


class NodeAnswer:
    """The node agent's ``lbdoctor.probes/v1`` answer, kept while the publication and its findings last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # built in worker threads, one request at a time
        self._source: object = None  # the publication the answer was built from
        self._fingerprint = ""
        self._built_at = -math.inf
        self._changed_at = 0.0
        self._answer: Answer | None = None

    def current(
        self, source: object, node: str | None, ready: bool, statuses: Sequence[TargetStatus],
        results: Sequence[CheckResult], now: float,
    ) -> Answer:  # fmt: skip
        """The answer for this publication (``source``: any object that changes with it)."""
        with self._lock:
            return self._current(source, node, ready, statuses, results, now)

    def _current(
        self, source: object, node: str | None, ready: bool, statuses: Sequence[TargetStatus],
        results: Sequence[CheckResult], now: float,
    ) -> Answer:  # fmt: skip
        if self._answer is not None and source is self._source and now - self._built_at < MESSAGE_REFRESH:
            return self._answer
        rows = targets_json(statuses, compact=True)
        findings = results_json(exported(results))
        fingerprint = _digest(
            json.dumps(
                [node, ready, rows, [{k: v for k, v in r.items() if k not in ("message", "remedy")} for r in findings]],
                separators=(",", ":"),
            ).encode()
        )
        self._source = source
        if self._answer is not None and fingerprint == self._fingerprint and now - self._built_at < MESSAGE_REFRESH:
            return self._answer  # the same states and findings: only times and messages moved
        if fingerprint != self._fingerprint:
            self._changed_at = now
        document = {
            "schema": PROBES_SCHEMA,
            "role": "node",
            "node": node,
            "ready": ready,
            "changed_at": iso(self._changed_at),
            "targets": rows,
            "results": findings,
        }
        body = json.dumps(document, separators=(",", ":")).encode()
        etag = f'W/"{_digest(body)}"'
        if self._answer is None or self._answer.etag != etag:
            self._answer = Answer(body, gzip.compress(body, compresslevel=6) if len(body) >= GZIP_OVER else None, etag)
        self._fingerprint, self._built_at = fingerprint, now
        return self._answer


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


def matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110's weak comparison of ``If-None-Match`` with the current ETag (``*`` matches any)."""
    if not if_none_match:
        return False
    bare = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == bare:
            return True
    return False


# ---- the cluster role's answer ----------------------------------------------------------------------------


def _in(namespace: str | None, object_namespace: str) -> bool:
    return namespace is None or object_namespace in ("", namespace)


def cluster_document(
    agents: Sequence[AgentView], now: float, *, namespace: str | None = None, standby: bool = False
) -> dict[str, Any]:
    """Every node agent's rows and results with each agent's state and age (``lbdoctor diagnose``). Only what
    the agents that are shown said; ``namespace`` narrows the rows and results (cluster-scoped ones stay)."""
    statuses = [s for a in agents if a.shows for s in a.targets if _in(namespace, s.target.namespace)]
    results = [r for a in agents if a.shows for r in a.results if _in(namespace, r.object.namespace)]
    return {
        "schema": PROBES_SCHEMA,
        "role": "cluster",
        "standby": standby,
        "generated_at": iso(now),
        "namespace": namespace,
        "agents": agents_json(agents, now),
        "targets": targets_json(statuses, compact=True),
        "results": results_json(results),
    }


# ---- reading ----------------------------------------------------------------------------------------------


class DocumentError(ValueError):
    """A document lbdoctor will not use; ``kind`` is the lbdoctor_errors_total kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class NodeDocument:
    node: str
    ready: bool
    changed_at: float | None
    targets: tuple[TargetStatus, ...]
    results: tuple[CheckResult, ...]
    rejected_rows: int = 0
    foreign_rows: int = 0


def parse_time(value: Any) -> float | None:
    from datetime import datetime

    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _trusted_results(rows: Any, node: str | None) -> tuple[tuple[CheckResult, ...], int]:
    """The results of checks only node agents run, each about the agent's own node (when it is known):
    a node agent speaks for nothing else. Returns them and how many were refused as about another node."""
    found = results_from_json(rows, statuses=frozenset(s.value for s in EXPORTED_STATUSES))
    kept = tuple(r for r in found if r.check in NODE_ONLY and (node is None or r.node == node))
    foreign = sum(1 for r in found if r.check in NODE_ONLY and node is not None and r.node != node)
    return kept, foreign


def parse_node_document(document: Any, node: str | None) -> NodeDocument:
    """A node agent's ``lbdoctor.probes/v1`` answer; ``node``: the node its pod runs on (None: configured by
    URL, trusted for the node it names). Raises DocumentError."""
    if not isinstance(document, dict) or document.get("schema") != PROBES_SCHEMA:
        raise DocumentError("invalid_document", f"not a {PROBES_SCHEMA} document")
    said = document.get("node")
    if document.get("role") != "node" or not isinstance(document.get("targets"), list) or not isinstance(said, str):
        raise DocumentError("invalid_document", "not a node agent's answer (role node, its node, a list of targets)")
    if node is not None and said != node:
        raise DocumentError("foreign_node", f"speaks for node {said!r}, runs on {node!r}")
    parsed = parse_targets(document["targets"], node=said)
    results, foreign = _trusted_results(document.get("results"), said)
    return NodeDocument(
        node=said,
        ready=document.get("ready") is True,
        changed_at=parse_time(document.get("changed_at")),
        targets=parsed.statuses,
        results=results,
        rejected_rows=parsed.rejected,
        foreign_rows=parsed.foreign + foreign,
    )


def parse_legacy_document(document: Any, node: str | None) -> NodeDocument:
    """An agent older than ``/api/v1/probes`` (during an upgrade): its ``lbdoctor.results/v1`` answer."""
    if not isinstance(document, dict) or document.get("schema") != "lbdoctor.results/v1":
        raise DocumentError("invalid_document", "not a lbdoctor.results/v1 document")
    said = document.get("node")
    if document.get("role") != "node" or not isinstance(document.get("targets"), list) or not isinstance(said, str):
        raise DocumentError("invalid_document", "not a node agent's results (role node, a list of targets)")
    if node is not None and said != node:
        raise DocumentError("foreign_node", f"speaks for node {said!r}, runs on {node!r}")
    parsed = parse_targets(document["targets"], node=said)
    results, foreign = _trusted_results(document.get("results"), said)
    return NodeDocument(said, document.get("ready") is True, None, parsed.statuses, results, parsed.rejected,
                        parsed.foreign + foreign)  # fmt: skip


_AGENTS_MAX = 100_000


@dataclass(frozen=True)
class ClusterProbes:
    """The cluster role's answer as ``lbdoctor diagnose`` reads it."""

    generated_at: float | None
    standby: bool
    agents: tuple[AgentView, ...]
    targets: tuple[TargetStatus, ...]
    results: tuple[CheckResult, ...]
    rejected_rows: int = 0


def parse_cluster_document(document: Any, now: float) -> ClusterProbes:
    """The cluster role's ``lbdoctor.probes/v1`` answer, each part validated as the cluster role validates the
    agents' (bounded strings, closed sets); raises DocumentError. An agent's ``read_at`` is ``now`` less the
    age the cluster role gives, so a reader's clock that differs from the cluster's does not age it."""
    if not isinstance(document, dict) or document.get("schema") != PROBES_SCHEMA:
        raise DocumentError("invalid_document", f"not a {PROBES_SCHEMA} document")
    if document.get("role") != "cluster" or not isinstance(document.get("agents"), list):
        raise DocumentError("invalid_document", "not the cluster role's answer (role cluster, a list of agents)")
    agents = []
    for row in document["agents"][:_AGENTS_MAX]:
        if not isinstance(row, dict) or row.get("state") not in AgentState._value2member_map_:
            continue
        node, url, error = row.get("node"), row.get("url"), row.get("error")
        if not isinstance(node, str) or len(node) > 253 or not isinstance(url, str) or len(url) > 1024:
            continue
        age = row.get("age_seconds")
        if not isinstance(age, int | float) or isinstance(age, bool) or not 0 <= age < 10**9:
            age = None
        agents.append(
            AgentView(
                node=node,
                url=url,
                state=AgentState(row["state"]),
                read_at=None if age is None else now - float(age),
                changed_at=parse_time(row.get("changed_at")),
                ready=row.get("ready") is True,
                error=error[:1024] if isinstance(error, str) else None,
            )
        )
    parsed = parse_targets(document.get("targets"))
    results, _ = _trusted_results(document.get("results"), None)
    by_node: dict[str, list[TargetStatus]] = {}
    for status in parsed.statuses:
        by_node.setdefault(status.target.node, []).append(status)
    agents = [replace(agent, targets=tuple(by_node.get(agent.node, ()))) for agent in agents]
    return ClusterProbes(
        generated_at=parse_time(document.get("generated_at")),
        standby=document.get("standby") is True,
        agents=tuple(agents),
        targets=parsed.statuses,
        results=results,
        rejected_rows=parsed.rejected,
    )
