"""The node role's checks as pure functions: verdicts, reasons, messages and root-cause links."""

from __future__ import annotations

from exporter.checks import NodeContext, evaluate_node
from exporter.checks.health_probe import verdict
from exporter.checks.pod_status import verdict as pod_verdict
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import build_plan
from exporter.lb.targets import ProbeTarget, TargetStatus, node_targets
from exporter.lb.thresholds import PredictedHealth
from exporter.model.objects import ContainerPort, PodCondition
from exporter.model.probe import ProbeOutcome
from exporter.model.results import Check, Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from tests.builders import NODE, nlb, pod

OK = ProbeOutcome(True, None, 0.01, status_code=200, detail="HTTP 200")
REFUSED = ProbeOutcome(False, Reason.CONNECTION_REFUSED, 0.001, detail="connection refused")


def a_target(**annotations: str) -> tuple[ClusterSnapshot, ProbeTarget]:
    snapshot = ClusterSnapshot.of(services=[nlb(annotations=annotations)], pods=[pod()])
    [target] = node_targets(build_plan(snapshot, ControllerConfig()), snapshot, NODE).targets
    return snapshot, target


def after(target: ProbeTarget, history: list[ProbeOutcome]) -> TargetStatus:
    health = PredictedHealth()
    for outcome in history:
        health = health.after(outcome.success, target.thresholds)
    failures = [o for o in history if not o.success]
    return TargetStatus(target, history[-1], 1000.0, health, failures[-1] if failures else None)


def test_probe_verdict_follows_the_thresholds() -> None:
    _, target = a_target()  # NLB: 3/3
    assert verdict(after(target, [OK, OK, OK]), 1000).status is Status.OK
    warn = verdict(after(target, [OK, OK, OK, REFUSED]), 1000)
    assert (warn.status, warn.reason) == (Status.WARN, Reason.CONNECTION_REFUSED)
    assert "failed 1 of the 3 checks" in warn.message and "in about 20 s" in warn.message
    fail = verdict(after(target, [OK, OK, OK, REFUSED, REFUSED, REFUSED]), 1000)
    assert (fail.status, fail.reason) == (Status.FAIL, Reason.CONNECTION_REFUSED)
    assert "nothing listens on port 8080" in fail.remedy


def test_recovering_target_keeps_its_failure_reason() -> None:
    _, target = a_target()
    result = verdict(after(target, [OK, OK, OK, REFUSED, REFUSED, REFUSED, OK]), 1000)
    assert (result.status, result.reason) == (Status.FAIL, Reason.CONNECTION_REFUSED)
    assert "recovering" in result.message


def test_flapping_target_is_reported_even_while_healthy() -> None:
    _, target = a_target()
    status = after(target, [OK, OK, OK])
    status = TargetStatus(status.target, status.outcome, 1000.0, status.health, None, flips=(700.0, 900.0))
    result = verdict(status, 1000.0)
    assert (result.status, result.reason) == (Status.WARN, Reason.FLAPPING)
    old = TargetStatus(status.target, status.outcome, 1000.0, status.health, None, flips=(1.0, 2.0))
    assert verdict(old, 1000.0).status is Status.OK  # flips long ago do not count


def test_not_probed_yet_is_unknown() -> None:
    _, target = a_target()
    result = verdict(TargetStatus(target), 0)
    assert (result.status, result.reason) == (Status.UNKNOWN, Reason.NOT_PROBED_YET)


def test_pod_status_reasons() -> None:
    assert pod_verdict(pod()).status is Status.OK
    assert pod_verdict(pod(waiting="CrashLoopBackOff", ready=False)).reason is Reason.CRASH_LOOP_BACK_OFF
    assert pod_verdict(pod(phase="Pending", ip=None, waiting="ImagePullBackOff")).reason is Reason.POD_NOT_RUNNING
    assert pod_verdict(pod(ready=False)).reason is Reason.CONTAINER_NOT_READY
    assert pod_verdict(pod(ip=None)).reason is Reason.POD_HAS_NO_IP
    gate = "target-health.elbv2.k8s.aws/k8s-shop-web-0123456789"
    gated = pod(gates=(gate,), conditions=(PodCondition(gate, "False", "Target.Timeout", "Request timed out"),))
    result = pod_verdict(gated)
    assert result.reason is Reason.READINESS_GATE_NOT_READY and "Target.Timeout" in result.message


def test_crash_loop_is_the_root_cause_of_the_failing_probe() -> None:
    snapshot = ClusterSnapshot.of(services=[nlb()], pods=[pod(waiting="CrashLoopBackOff", ready=False)])
    plan = build_plan(snapshot, ControllerConfig())
    targets = node_targets(plan, snapshot, NODE)
    status = after(targets.targets[0], [REFUSED] * 3)
    results = evaluate_node(NodeContext(NODE, snapshot, plan, targets, (status,), 1000))
    root, consequence = results[0], results[1]
    assert (root.check, root.reason) == (Check.POD_STATUS, Reason.CRASH_LOOP_BACK_OFF)
    assert (consequence.check, consequence.caused_by) == (Check.HEALTH_PROBE, root.key)


def test_target_port_not_declared_by_the_pod_is_a_warning() -> None:
    snapshot = ClusterSnapshot.of(services=[nlb()], pods=[pod(ports=(ContainerPort("http", 80),))])
    plan = build_plan(snapshot, ControllerConfig())
    targets = node_targets(plan, snapshot, NODE)
    results = evaluate_node(NodeContext(NODE, snapshot, plan, targets, (), 0))
    [finding] = [r for r in results if r.check is Check.TARGET_PORT]
    assert (finding.status, finding.reason) == (Status.WARN, Reason.TARGET_PORT_NOT_EXPOSED)
    assert "http=80" in finding.message and "8080" in finding.message
