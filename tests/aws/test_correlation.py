"""ELB verdict against lbdoctor's own probe: the correlation names the side at fault (moto + real probe targets)."""

from __future__ import annotations

import pytest

from exporter.checks.elb_correlation import Side
from exporter.lb.targets import ProbeTarget, TargetStatus, node_targets
from exporter.lb.thresholds import LbState, PredictedHealth
from exporter.model.probe import ProbeOutcome
from exporter.model.results import Check, Reason, Status
from tests.aws.faults import patch_target_health
from tests.aws.helpers import diagnose, one
from tests.aws.world import POD_IPS, World, from_sg

TIMEOUT = ("unhealthy", "Target.Timeout", "Request timed out")


def probe_target(world: World, pod: str) -> ProbeTarget:
    """The target a node agent derives for the pod, from the same snapshot and plan."""
    snapshot = world.snapshot()
    node = snapshot.pods[f"shop/{pod}"].node_name
    assert node is not None
    targets = node_targets(world.plan(snapshot), snapshot, node).targets
    return next(t for t in targets if t.pod == pod)


def status(target: ProbeTarget, *, ok: bool, state: LbState, fail_streak: int = 0) -> TargetStatus:
    outcome = (
        ProbeOutcome(True, None, 0.01, 200)
        if ok
        else ProbeOutcome(False, Reason.TIMEOUT, 5.0, detail="no answer within 5 s")
    )
    return TargetStatus(target, outcome, 990.0, PredictedHealth(state, 0 if not ok else 3, fail_streak))


async def test_elb_unhealthy_and_probe_failing_blames_the_application(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    patch_target_health(monkeypatch, {POD_IPS["web-1"]: TIMEOUT})
    probe = status(probe_target(world, "web-1"), ok=False, state=LbState.UNHEALTHY, fail_streak=3)
    round_ = await diagnose(world, probes=[probe])
    [correlation] = round_.correlations
    assert correlation.side is Side.APPLICATION
    result = one(round_, Check.ELB_TARGET_HEALTH, pod="web-1")
    assert (result.status, result.reason) == (Status.FAIL, Reason.TARGET_TIMEOUT)
    assert "application is at fault" in result.message
    assert "Timeout" in result.message
    cause = one(round_, Check.HEALTH_PROBE, pod="web-1")
    assert result.caused_by == cause.key and cause.reason is Reason.TIMEOUT
    assert result.remedy.startswith("caused by health_probe Timeout on Ingress shop/web (pod web-1")


async def test_elb_unhealthy_and_probe_passing_points_at_the_security_group(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.revoke(world.cluster_sg, from_sg(world.lb_sg, 8080))
    patch_target_health(monkeypatch, {POD_IPS["web-1"]: TIMEOUT})
    probe = status(probe_target(world, "web-1"), ok=True, state=LbState.HEALTHY)
    round_ = await diagnose(world, probes=[probe])
    [correlation] = round_.correlations
    assert correlation.side is Side.NETWORK
    finding = one(round_, Check.SECURITY_GROUPS, pod="web-1")
    assert finding.reason is Reason.HEALTH_CHECK_PORT_NOT_ALLOWED
    result = one(round_, Check.ELB_TARGET_HEALTH, pod="web-1")
    assert "network path is at fault" in result.message
    assert result.caused_by == finding.key
    assert result.remedy.endswith(finding.remedy)
    assert "caused by security_groups HealthCheckPortNotAllowed on Ingress shop/web (pod web-1)" in result.remedy
    # roots first: the security-group finding precedes the ELB's verdict it explains
    keys = [r.key for r in round_.results]
    assert keys.index(finding.key) < keys.index(result.key)


async def test_elb_unhealthy_and_probe_passing_with_a_nacl_finding(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.nacl_entry(world.node_acl, 50, egress=False, allow=False, cidr="10.0.0.0/16", ports=(8080, 8080))
    patch_target_health(monkeypatch, {POD_IPS["web-2"]: TIMEOUT})
    round_ = await diagnose(world, probes=[status(probe_target(world, "web-2"), ok=True, state=LbState.HEALTHY)])
    result = one(round_, Check.ELB_TARGET_HEALTH, pod="web-2")
    assert result.caused_by is not None
    assert result.caused_by[0] is Check.NETWORK
    assert "NACL" in result.message or "network ACL" in result.message


async def test_elb_unhealthy_probe_passing_and_nothing_found(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    patch_target_health(monkeypatch, {POD_IPS["web-1"]: TIMEOUT})
    round_ = await diagnose(world, probes=[status(probe_target(world, "web-1"), ok=True, state=LbState.HEALTHY)])
    result = one(round_, Check.ELB_TARGET_HEALTH, pod="web-1")
    assert "found no security group, NACL or route" in result.message
    assert "host firewall" in result.remedy
    assert result.caused_by is None


async def test_probe_failing_while_elb_still_healthy_is_about_to_fail(world: World) -> None:
    """1 of the ALB's 2 failures counted: the LB will mark it unhealthy one interval (15 s) from now."""
    probe = status(probe_target(world, "web-2"), ok=False, state=LbState.HEALTHY, fail_streak=1)
    round_ = await diagnose(world, probes=[probe])
    [correlation] = round_.correlations
    assert correlation.side is Side.ABOUT_TO_FAIL
    assert correlation.lead_seconds == 15.0
    result = one(round_, Check.ELB_TARGET_HEALTH, pod="web-2")
    assert (result.status, result.reason) == (Status.WARN, Reason.PROBE_FAILING_ELB_HEALTHY)
    assert "in about 15 s" in result.message
    assert one(round_, Check.ELB_TARGET_HEALTH, pod="web-1").status is Status.OK


async def test_instance_targets_correlate_with_the_pods_on_their_node(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    patch_target_health(monkeypatch, {world.instances["node-a"]: ("unhealthy", "Target.FailedHealthChecks", "Health checks failed")})
    probe = status(probe_target(world, "api-1"), ok=False, state=LbState.UNHEALTHY, fail_streak=3)
    round_ = await diagnose(world, probes=[probe])
    [correlation] = round_.correlations
    assert correlation.side is Side.APPLICATION
    assert correlation.view.place.node is not None
    assert correlation.view.place.node.meta.name == "node-a"


async def test_failing_probes_make_their_target_group_hot(world: World) -> None:
    """A failing probe pulls its target group's next DescribeTargetHealth forward to the hot interval."""
    from exporter.aws.doctor import AwsDoctor
    from tests.aws.helpers import settings

    doctor = AwsDoctor(settings())
    failing = status(probe_target(world, "web-1"), ok=False, state=LbState.HEALTHY, fail_streak=1)
    try:
        await doctor.refresh(world.snapshot(), plan=world.plan(), now=1000.0, full=True)
        calm = await doctor.refresh(world.snapshot(), plan=world.plan(), now=1016.0)
        hot = await doctor.refresh(world.snapshot(), plan=world.plan(), probes=[failing], now=1016.0)
    finally:
        doctor.close()
    assert calm.aws.api_requests[("DescribeTargetHealth", "success")] == 2  # nothing due 16 s later
    assert hot.aws.api_requests[("DescribeTargetHealth", "success")] == 3  # the web target group only
    assert hot.aws.health[world.web_tg].fetched_at == 1016.0
    assert hot.aws.health[world.api_tg].fetched_at == 1000.0
