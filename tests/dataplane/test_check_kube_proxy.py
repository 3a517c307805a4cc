"""The kube_proxy check: what a person reads for each state of the rules and of kube-proxy itself."""

from __future__ import annotations

from dataclasses import replace

from exporter.checks import kube_proxy
from exporter.checks.causes import link
from exporter.dataplane.compare import Finding, Problem
from exporter.dataplane.names import ServicePortName
from exporter.dataplane.report import DataplaneReport, KubeProxyHealth, RulesReport, RulesState, TrackedFinding
from exporter.model.objects import ObjectMeta, Pod
from exporter.model.results import CheckResult, ObjectRef, Reason, Status, TargetRef
from exporter.model.snapshot import ClusterSnapshot

NODE = "node-a"
NOW = 1_000_000.0
WEB = ServicePortName("shop", "web", "http", "tcp")
LB = {ObjectRef("Service", "shop", "web"), ObjectRef("Service", "shop", "quiet")}
PROXY_POD = Pod(
    ObjectMeta("kube-system", "kube-proxy-x7k2p", labels={"k8s-app": "kube-proxy"}), NODE, "Running", "10.0.1.23"
)
SNAPSHOT = ClusterSnapshot.of(pods=[PROXY_POD])
HEALTHY = KubeProxyHealth(
    checked_at=NOW,
    healthz_url="http://127.0.0.1:10256/healthz",
    reachable=True,
    healthy=True,
    status_code=200,
    metrics_url="http://127.0.0.1:10249/metrics",
    last_sync=NOW - 4,
    last_queued=NOW - 5,
    sync_lag=0.0,
)


def missing(ip: str, pod: str | None = None) -> Finding:
    return Finding(
        Problem.ENDPOINT_MISSING, WEB, "IPv4", f"KUBE-SVC-X does not send traffic to {ip}:8080", (ip, 8080), pod
    )


def report(
    *findings: tuple[Finding, float], health: KubeProxyHealth | None = HEALTHY, **rules: object
) -> DataplaneReport:
    base = RulesReport(
        state=RulesState.COMPARED,
        mode="iptables",
        backend="nft",
        ports=12,
        endpoints=30,
        lines=420,
        seconds=0.05,
        findings=tuple(TrackedFinding(f, seen) for f, seen in findings),
    )
    return DataplaneReport(replace(base, **rules), health, grace=30.0)  # type: ignore[arg-type]


def run(data: DataplaneReport, now: float = NOW) -> list[CheckResult]:
    return kube_proxy.verdicts(NODE, data, SNAPSHOT, LB, now)


def by_object(results: list[CheckResult], kind: str) -> list[CheckResult]:
    return [r for r in results if r.object.kind == kind]


def test_matching_rules_and_a_healthy_kube_proxy() -> None:
    results = run(report())
    assert {r.status for r in results} == {Status.OK}
    rules, health = by_object(results, "Node")
    assert "iptables mode (nft backend): 12 Service ports and 30 endpoints compared" in rules.message
    assert health.target == TargetRef(pod="kube-proxy-x7k2p", ip="127.0.0.1", port=10256)
    assert "healthy (/healthz 200); last sync 4 s ago" in health.message
    assert {r.object.name for r in by_object(results, "Service")} == {"web", "quiet"}


def test_a_new_difference_waits_for_the_grace_period() -> None:
    young = report((missing("10.244.1.9"), NOW - 10))
    assert all(r.status is Status.OK for r in run(young))
    assert "1 more younger than it" in by_object(run(young), "Node")[0].message
    old = run(young, NOW + 25)
    [failing] = [r for r in old if r.status is Status.FAIL]
    assert failing.reason is Reason.ENDPOINT_RULES_MISSING


def test_missing_endpoint_message_names_service_port_endpoint_and_pod() -> None:
    results = run(report((missing("10.244.1.9", "web-7d9f8-abcde"), NOW - 45)))
    [failing] = [r for r in results if r.status is Status.FAIL]
    assert failing.object == ObjectRef("Service", "shop", "web")
    assert failing.target == TargetRef(pod="web-7d9f8-abcde", ip="10.244.1.9", port=8080)
    assert failing.message.startswith(
        "shop/web:http (tcp, IPv4): endpoint 10.244.1.9:8080 (pod web-7d9f8-abcde) is usable per the EndpointSlices"
    )
    assert "(for 45 s, longer than kube-proxy's 30 s grace period)" in failing.message
    assert "kubectl -n kube-system logs kube-proxy-x7k2p" in failing.remedy
    assert "iptables-restore" in failing.remedy
    assert "kubectl -n kube-system rollout restart daemonset/kube-proxy" in failing.remedy
    assert "ok" not in {r.status.value for r in results if r.object == failing.object}


def test_each_problem_maps_to_its_reason() -> None:
    cases = {
        Problem.SERVICE_RULES_MISSING: Reason.SERVICE_RULES_MISSING,
        Problem.REJECTING: Reason.SERVICE_RULES_MISSING,
        Problem.ENDPOINT_STALE: Reason.STALE_ENDPOINT_RULES,
        Problem.NODE_PORT_MISSING: Reason.NODE_PORT_RULES_MISSING,
        Problem.HEALTH_CHECK_PORT_MISSING: Reason.NODE_PORT_RULES_MISSING,
    }
    for problem, reason in cases.items():
        endpoint = ("10.244.9.9", 8080) if problem is Problem.ENDPOINT_STALE else None
        finding = Finding(problem, WEB, "IPv4", "detail", endpoint, port=None if endpoint else 80)
        [failing] = [r for r in run(report((finding, NOW - 60))) if r.status is Status.FAIL]
        assert failing.reason is reason, problem


def test_reject_and_missing_service_chain_are_one_result_for_the_service_port() -> None:
    gone = Finding(Problem.SERVICE_RULES_MISSING, WEB, "IPv4", "no nat KUBE-SERVICES rule …", port=80)
    rejecting = Finding(Problem.REJECTING, WEB, "IPv4", 'REJECT "shop/web:http has no endpoints" …', port=80)
    [failing] = [r for r in run(report((gone, NOW - 60), (rejecting, NOW - 60))) if r.status is Status.FAIL]
    assert failing.reason is Reason.SERVICE_RULES_MISSING and "has no endpoints" in failing.message
    assert failing.target == TargetRef(pod=None, ip=None, port=80)


def test_many_endpoint_results_are_capped_and_counted() -> None:
    many = [(missing(f"10.244.2.{i}"), NOW - 60) for i in range(1, 26)]
    failing = [r for r in run(report(*many)) if r.status is Status.FAIL]
    assert len(failing) == kube_proxy.MAX_ENDPOINT_RESULTS
    assert failing[-1].message.endswith(
        "and 15 more endpoint(s) of shop/web alike (lbdoctor_kube_proxy_rules_missing and _stale count them all)"
    )
    assert len({r.key for r in failing}) == len(failing)  # distinct identities


def test_unhealthy_kube_proxy_is_the_root_cause_of_its_stale_rules() -> None:
    sick = replace(HEALTHY, healthy=False, status_code=503, detail="HTTP 503, lastUpdated …")
    results = link(run(report((missing("10.244.1.9"), NOW - 60), health=sick)))
    [down] = [r for r in results if r.reason is Reason.KUBE_PROXY_UNHEALTHY]
    assert down.status is Status.FAIL and "answers 503" in down.message
    assert "rollout restart daemonset/kube-proxy" in down.remedy
    [rule] = [r for r in results if r.reason is Reason.ENDPOINT_RULES_MISSING]
    assert rule.caused_by == down.key


def test_a_draining_node_is_a_warning_without_a_restart() -> None:
    draining = replace(HEALTHY, healthy=False, status_code=503, node_eligible=False)
    results = run(report((missing("10.244.1.9"), NOW - 60), health=draining))
    [down] = [r for r in results if r.reason is Reason.KUBE_PROXY_UNHEALTHY]
    assert down.status is Status.WARN and "being deleted or drained" in down.message and down.remedy == ""
    [rule] = [r for r in results if r.reason is Reason.ENDPOINT_RULES_MISSING]
    assert rule.caused_by is None  # draining explains the 503, not the missing rule


def test_kube_proxy_not_answering_although_its_rules_exist() -> None:
    silent = replace(HEALTHY, reachable=False, healthy=None, status_code=None, detail="connection refused")
    [down] = [r for r in run(report(health=silent)) if r.reason is Reason.KUBE_PROXY_UNHEALTHY]
    assert (
        down.status is Status.FAIL
        and "does not answer on http://127.0.0.1:10256/healthz (connection refused)" in down.message
    )


def test_sync_stale_warns_then_fails_with_the_lag() -> None:
    late = replace(HEALTHY, last_sync=NOW - 300, last_queued=NOW - 20, sync_lag=280.0)
    data = replace(report(health=late), sync_pending_since=NOW - 40)
    [stale] = [r for r in run(data) if r.reason is Reason.KUBE_PROXY_SYNC_STALE]
    assert stale.status is Status.WARN
    assert "last sync was 300 s ago, the last change was queued 20 s ago (queued - synced = 280 s)" in stale.message
    assert stale.target == TargetRef(pod="kube-proxy-x7k2p", ip="127.0.0.1", port=10249)
    [stale] = [r for r in run(replace(data, sync_pending_since=NOW - 61)) if r.reason is Reason.KUBE_PROXY_SYNC_STALE]
    assert stale.status is Status.FAIL
    assert not [r for r in run(replace(data, sync_pending_since=NOW - 5)) if r.reason is Reason.KUBE_PROXY_SYNC_STALE]


def test_unreadable_rules_are_unknown_with_the_reason_and_the_fix() -> None:
    denied = report(
        state=RulesState.UNREADABLE,
        detail="iptables-nft-save -t nat: exit code 4: iptables-nft-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)",
        failure="permission_denied",
    )
    results = run(denied)
    [rules] = [r for r in results if r.target is None]
    assert rules.status is Status.UNKNOWN and rules.reason is Reason.KUBE_PROXY_RULES_UNREADABLE
    assert "Permission denied" in rules.message and "NET_ADMIN" in rules.remedy
    assert not by_object(results, "Service")  # nothing claimed about Services the rules of which are unknown
    missing_tool = run(report(state=RulesState.UNREADABLE, detail="x", failure="missing_binary"))[0]
    assert "install iptables" in missing_tool.remedy


def test_other_states_of_the_rules() -> None:
    ipvs = run(report(state=RulesState.UNSUPPORTED, detail="kube-proxy runs in IPVS mode"))[0]
    assert ipvs.reason is Reason.KUBE_PROXY_MODE_UNSUPPORTED and ipvs.status is Status.UNKNOWN
    other = run(report(state=RulesState.OTHER_NODE, detail="these rules are not node-a's: …"))[0]
    assert other.reason is Reason.KUBE_PROXY_RULES_FROM_ANOTHER_NODE
    pending = run(report(state=RulesState.PENDING, detail="waiting for lbdoctor's Kubernetes caches to sync"))[0]
    assert pending.reason is Reason.NOT_PROBED_YET
    assert run(report(state=RulesState.DISABLED)) == []


def test_no_kube_proxy_at_all_is_unknown_not_a_failure() -> None:
    nothing = replace(HEALTHY, reachable=False, healthy=None, detail="connection refused")
    results = run(report(state=RulesState.NOT_FOUND, detail="no kube-proxy rules", health=nothing))
    assert [r.status for r in results] == [Status.UNKNOWN]
    assert results[0].reason is Reason.KUBE_PROXY_NOT_FOUND and "kube_proxy_mode: off" in results[0].remedy
    # kube-proxy answers but its rules are invisible: lbdoctor is probably not in the host network.
    answering = run(report(state=RulesState.NOT_FOUND, detail="no kube-proxy rules"))
    assert answering[0].reason is Reason.KUBE_PROXY_RULES_UNREADABLE and "hostNetwork" in answering[0].remedy
