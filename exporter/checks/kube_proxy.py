"""Runbook step "restart kube-proxy": this node's kube-proxy rules against the API, and kube-proxy's health.

Pure: reads the ``DataplaneReport`` the dataplane adapters published. Per Service, each rule that
is missing or stale past the grace period (kube-proxy's normal lag) is a ``fail`` naming the Service
port, the endpoint and the chain; per node, one result says whether the rules could be read and
compared, one what kube-proxy's /healthz says, and one (only when late) how far its syncs lag.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from urllib.parse import urlsplit

from exporter.checks.context import Scope
from exporter.dataplane.compare import Finding, Problem
from exporter.dataplane.names import join_host_port
from exporter.dataplane.report import DataplaneReport, RulesReport, RulesState, TrackedFinding
from exporter.lb.plan import LbPlan
from exporter.model import subjects
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, Status, TargetRef
from exporter.model.snapshot import ClusterSnapshot

RESTART = "kubectl -n kube-system rollout restart daemonset/kube-proxy"
# Endpoint results listed per Service and reason; the rest are counted in the last one (and in metrics).
MAX_ENDPOINT_RESULTS = 10

_REASONS = {
    Problem.SERVICE_RULES_MISSING: Reason.SERVICE_RULES_MISSING,
    Problem.REJECTING: Reason.SERVICE_RULES_MISSING,
    Problem.ENDPOINT_MISSING: Reason.ENDPOINT_RULES_MISSING,
    Problem.ENDPOINT_STALE: Reason.STALE_ENDPOINT_RULES,
    Problem.NODE_PORT_MISSING: Reason.NODE_PORT_RULES_MISSING,
    Problem.NODE_PORT_REJECTING: Reason.NODE_PORT_RULES_MISSING,
    Problem.HEALTH_CHECK_PORT_MISSING: Reason.NODE_PORT_RULES_MISSING,
}
_RANK = [
    Reason.SERVICE_RULES_MISSING,
    Reason.NODE_PORT_RULES_MISSING,
    Reason.ENDPOINT_RULES_MISSING,
    Reason.STALE_ENDPOINT_RULES,
]


def evaluate(scope: Scope) -> Iterable[CheckResult]:
    context = scope.node
    if context is None or context.dataplane is None:
        return ()
    return verdicts(context.node, context.dataplane, context.snapshot, load_balanced(context.plan), context.now)


def load_balanced(plan: LbPlan) -> set[ObjectRef]:
    """The Services behind a load balancer: each gets a kube_proxy verdict, ok or not."""
    return {
        ObjectRef("Service", backend.service.meta.namespace, backend.service.meta.name)
        for backend in plan.backends
        if backend.service is not None
    }


def kube_proxy_pod(snapshot: ClusterSnapshot, node: str) -> str | None:
    """This node's kube-proxy pod (the node agent sees every pod on its node)."""
    for pod in snapshot.pods.in_namespace("kube-system").values():
        if pod.node_name == node and (
            pod.meta.labels.get("k8s-app") == "kube-proxy" or pod.meta.name.startswith("kube-proxy-")
        ):
            return pod.meta.name
    return None


def remedy(pod: str | None, mode: str | None) -> str:
    logs = f"kubectl -n kube-system logs {pod}" if pod else "the kube-proxy pod's logs on this node"
    if mode == "nftables":
        errors = "nftables sync errors (kubeproxy_sync_proxy_rules_nftables_sync_failures_total)"
    else:
        errors = (
            "'Failed to execute iptables-restore' and sync errors "
            "(kubeproxy_sync_proxy_rules_iptables_restore_failures_total)"
        )
    only_here = f" (or only this node's: kubectl -n kube-system delete pod {pod})" if pod else ""
    return f"look first at {logs} for {errors}; then restart kube-proxy: {RESTART}{only_here}"


def verdicts(
    node: str,
    report: DataplaneReport,
    snapshot: ClusterSnapshot,
    load_balanced: Iterable[ObjectRef],
    now: float,
) -> list[CheckResult]:
    rules = report.rules
    if rules.state is RulesState.DISABLED:
        return []
    pod = kube_proxy_pod(snapshot, node)
    node_ref = ObjectRef("Node", "", node)
    results = [_rules_result(node_ref, report, pod, now)]
    results += _health_results(node_ref, report, pod, now)
    if rules.state is RulesState.COMPARED:
        service_results = _service_results(report.due(now), rules, pod, now, report.grace)
        failing = {r.object for r in service_results}
        for service in sorted(set(load_balanced) - failing, key=str):
            results.append(
                CheckResult(
                    Check.KUBE_PROXY,
                    Status.OK,
                    None,
                    service,
                    f"kube-proxy's {rules.mode} rules on node {node} for {service.namespace}/{service.name} "
                    "match the Service and its EndpointSlices",
                )
            )
        results += service_results
    return [_seen_on(node, result) for result in results]


def _seen_on(node: str, result: CheckResult) -> CheckResult:
    """Every kube_proxy result is about this node's rules: what the causal rules join it on."""
    if not subjects.linkable(result.status):
        return replace(result, node=node)
    about: tuple[tuple[str, str], ...] = (subjects.node(node),)
    if result.object.kind == "Service":
        ref = result.object
        about = (
            *about,
            subjects.service(ref.namespace, ref.name),
            subjects.service_node(ref.namespace, ref.name, node),
        )
    return replace(result, node=node, about=about)


def _mode(rules: RulesReport) -> str:
    if rules.mode is None:
        return ""
    return f"{rules.mode} mode ({rules.backend} backend)" if rules.backend else f"{rules.mode} mode"


def _rules_result(node_ref: ObjectRef, report: DataplaneReport, pod: str | None, now: float) -> CheckResult:
    rules = report.rules
    notes = f" Note: {'; '.join(rules.notes)}." if rules.notes else ""
    node = node_ref.name

    def unknown(reason: Reason, message: str, fix: str) -> CheckResult:
        return CheckResult(Check.KUBE_PROXY, Status.UNKNOWN, reason, node_ref, message + notes, fix)

    if rules.state is RulesState.PENDING:
        return unknown(Reason.NOT_PROBED_YET, f"kube-proxy's rules on node {node} not compared yet: {rules.detail}", "")
    if rules.state is RulesState.UNREADABLE:
        return unknown(
            Reason.KUBE_PROXY_RULES_UNREADABLE,
            f"kube-proxy's rules on node {node} could not be read: {rules.detail}",
            _unreadable_remedy(rules.failure),
        )
    if rules.state is RulesState.UNSUPPORTED:
        return unknown(
            Reason.KUBE_PROXY_MODE_UNSUPPORTED,
            f"node {node}: {rules.detail}",
            "check the IPVS virtual servers by hand (ipvsadm -Ln) against the EndpointSlices, or move kube-proxy "
            "to nftables mode (the kube-proxy-config ConfigMap's mode)",
        )
    if rules.state is RulesState.OTHER_NODE:
        return unknown(
            Reason.KUBE_PROXY_RULES_FROM_ANOTHER_NODE,
            rules.detail,
            f"capture the rules on node {node} itself (iptables-save, or nft -j list table ip kube-proxy)",
        )
    if rules.state is RulesState.NOT_FOUND:
        health = report.health
        if health is not None and health.reachable:
            return unknown(
                Reason.KUBE_PROXY_RULES_UNREADABLE,
                f"kube-proxy answers on {health.healthz_url}, but none of its rules are visible on node {node}: "
                f"{rules.detail}",
                "run lbdoctor in the host network namespace (hostNetwork: true), or set kube_proxy_mode to the "
                "mode kube-proxy uses",
            )
        answer = f"; nothing answers on {health.healthz_url} ({health.detail})" if health and health.healthz_url else ""
        return unknown(
            Reason.KUBE_PROXY_NOT_FOUND,
            f"no kube-proxy found on node {node}: {rules.detail}{answer}",
            "if the cluster replaces kube-proxy (Cilium kube-proxy replacement, for one) set kube_proxy_mode: off; "
            "otherwise check the kube-proxy DaemonSet has a pod on this node",
        )
    due = report.due(now)
    settling = report.settling(now)
    message = (
        f"kube-proxy on node {node}, {_mode(rules)}: {rules.ports} Service ports and {rules.endpoints} endpoints "
        f"compared with the API ({rules.lines} lines read in {rules.seconds:.2f} s); "
        f"{len(due)} rule problem(s) older than the {report.grace:g} s grace period"
    )
    if settling:
        message += f", {settling} more younger than it (kube-proxy may still be catching up)"
    return CheckResult(Check.KUBE_PROXY, Status.OK, None, node_ref, message + notes, "")


def _unreadable_remedy(failure: str | None) -> str:
    if failure == "missing_binary":
        return "install iptables (both iptables-nft and iptables-legacy) and nftables in the lbdoctor image"
    if failure == "permission_denied":
        return (
            "reading netfilter rules needs capabilities NET_ADMIN and NET_RAW in the host network namespace: "
            "securityContext.capabilities.add: [NET_ADMIN, NET_RAW] and hostNetwork: true"
        )
    if failure in ("stale_dump", "no_dump"):
        return (
            "check the kube-proxy-rules container of this node's lbdoctor pod (kubectl logs -c kube-proxy-rules): "
            "it reads the rules with NET_ADMIN and NET_RAW and writes them for the agent"
        )
    if failure in ("truncated", "invalid_output"):
        return "capture the rules again; the output was cut short"
    return "run the same command on the node by hand to see why it fails"


def _endpoint(url: str | None, pod: str | None) -> TargetRef:
    parts = urlsplit(url or "")
    return TargetRef(pod=pod, ip=parts.hostname, port=parts.port)


def _health_results(node_ref: ObjectRef, report: DataplaneReport, pod: str | None, now: float) -> list[CheckResult]:
    health = report.health
    if health is None or not health.healthz_url:
        return []
    target = _endpoint(health.healthz_url, pod)
    fix = remedy(pod, report.rules.mode)
    results: list[CheckResult] = []
    rules_seen = report.rules.state in (RulesState.COMPARED, RulesState.UNSUPPORTED)
    if not health.reachable:
        if rules_seen:
            results.append(
                CheckResult(
                    Check.KUBE_PROXY,
                    Status.FAIL,
                    Reason.KUBE_PROXY_UNHEALTHY,
                    node_ref,
                    f"kube-proxy's rules are on node {node_ref.name} but it does not answer on "
                    f"{health.healthz_url} ({health.detail}): it is not running, or not serving its health port",
                    fix,
                    target,
                )
            )
        elif report.rules.state is RulesState.UNREADABLE:
            results.append(
                CheckResult(
                    Check.KUBE_PROXY,
                    Status.UNKNOWN,
                    Reason.KUBE_PROXY_NOT_FOUND,
                    node_ref,
                    f"nothing answers on {health.healthz_url} ({health.detail}) and the rules are unreadable, so "
                    f"lbdoctor cannot tell whether kube-proxy runs on node {node_ref.name}",
                    "set kube_proxy_healthz_url to where kube-proxy serves /healthz (healthzBindAddress)",
                    target,
                )
            )
    elif health.healthy is False:
        draining = health.node_eligible is False
        results.append(
            CheckResult(
                Check.KUBE_PROXY,
                Status.WARN if draining else Status.FAIL,
                Reason.KUBE_PROXY_UNHEALTHY,
                node_ref,
                (
                    f"kube-proxy's /healthz answers {health.status_code}: node {node_ref.name} is being deleted or "
                    "drained (nodeEligible false), so load balancers take it out of service on purpose"
                    if draining
                    else f"kube-proxy's /healthz answers {health.status_code} ({health.detail}): it has had rule "
                    "changes it could not apply for longer than twice its syncPeriod, so load balancers checking "
                    "the node's healthCheckNodePort see it unhealthy"
                ),
                "" if draining else fix,
                target,
            )
        )
    else:
        synced = f"; last sync {now - health.last_sync:.0f} s ago" if health.last_sync else ""
        metrics = f"; sync metrics unavailable: {health.metrics_detail}" if health.metrics_detail else ""
        results.append(
            CheckResult(
                Check.KUBE_PROXY,
                Status.OK,
                None,
                node_ref,
                f"kube-proxy on node {node_ref.name} is healthy (/healthz {health.status_code}){synced}{metrics}",
                "",
                target,
            )
        )
    stale = _sync_stale(node_ref, report, pod, now, fix)
    if stale is not None:
        results.append(stale)
    return results


def _sync_stale(
    node_ref: ObjectRef, report: DataplaneReport, pod: str | None, now: float, fix: str
) -> CheckResult | None:
    health, since = report.health, report.sync_pending_since
    if health is None or since is None or health.last_sync is None or health.last_queued is None:
        return None
    waiting = now - since
    if waiting < report.grace:
        return None
    lag = health.sync_lag or 0.0
    return CheckResult(
        Check.KUBE_PROXY,
        Status.FAIL if waiting >= 2 * report.grace else Status.WARN,
        Reason.KUBE_PROXY_SYNC_STALE,
        node_ref,
        f"kube-proxy on node {node_ref.name} has had changes waiting for at least {waiting:.0f} s without a "
        f"successful sync: its last sync was {now - health.last_sync:.0f} s ago, the last change was queued "
        f"{now - health.last_queued:.0f} s ago (queued - synced = {lag:.0f} s); new Services and endpoints do "
        "not reach this node's rules",
        fix,
        _endpoint(health.metrics_url, pod),
    )


def _service_results(
    due: Sequence[TrackedFinding], rules: RulesReport, pod: str | None, now: float, grace: float
) -> list[CheckResult]:
    """One result per Service and target (a Service port, a NodePort, an endpoint), worst reason first."""
    grouped: dict[tuple[ObjectRef, TargetRef], list[TrackedFinding]] = defaultdict(list)
    for tracked in due:
        finding = tracked.finding
        grouped[(ObjectRef("Service", finding.spn.namespace, finding.spn.name), _target(finding))].append(tracked)
    fix = remedy(pod, rules.mode)
    results: list[CheckResult] = []
    shown: Counter[tuple[ObjectRef, Reason]] = Counter()
    hidden: Counter[tuple[ObjectRef, Reason]] = Counter()
    for (service, target), items in sorted(grouped.items(), key=lambda kv: (str(kv[0][0]), _order(kv[0][1]))):
        reason = min((_REASONS[t.finding.problem] for t in items), key=_RANK.index)
        if reason in _ENDPOINT_REASONS:
            shown[(service, reason)] += 1
            if shown[(service, reason)] > MAX_ENDPOINT_RESULTS:
                hidden[(service, reason)] += 1
                continue
        oldest = min(t.first_seen for t in items)
        details = "; ".join(_describe(t) for t in items)
        results.append(
            CheckResult(
                Check.KUBE_PROXY,
                Status.FAIL,
                reason,
                service,
                f"{details} (for {now - oldest:.0f} s, longer than kube-proxy's {grace:g} s grace period)",
                fix,
                target,
            )
        )
    for (service, reason), extra in hidden.items():
        last = max(i for i, r in enumerate(results) if r.object == service and r.reason is reason)
        result = results[last]
        results[last] = replace(
            result,
            message=f"{result.message}; and {extra} more endpoint(s) of {service.namespace}/{service.name} alike "
            "(lbdoctor_kube_proxy_rules_missing and _stale count them all)",
        )
    return results


_ENDPOINT_REASONS = (Reason.ENDPOINT_RULES_MISSING, Reason.STALE_ENDPOINT_RULES)


def _order(target: TargetRef) -> tuple[int, str, int]:
    return (0 if target.ip is None else 1, target.ip or "", target.port or 0)


def _target(finding: Finding) -> TargetRef:
    if finding.endpoint is not None:
        return TargetRef(pod=finding.pod, ip=finding.endpoint[0], port=finding.endpoint[1])
    return TargetRef(pod=None, ip=None, port=finding.port)


def _describe(tracked: TrackedFinding) -> str:
    finding = tracked.finding
    spn = finding.spn
    what = f"{spn} ({spn.protocol}, {finding.family})"
    if finding.endpoint is not None:
        pod = f" (pod {finding.pod})" if finding.pod else ""
        endpoint = join_host_port(*finding.endpoint)
        if finding.problem is Problem.ENDPOINT_MISSING:
            return f"{what}: endpoint {endpoint}{pod} is usable per the EndpointSlices but missing: {finding.detail}"
        return f"{what}: stale endpoint {endpoint}{pod}: {finding.detail}"
    return f"{what}: {finding.detail}"
