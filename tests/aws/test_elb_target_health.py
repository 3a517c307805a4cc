"""elb_target_health against moto: every row of docs/aws.md "Target health reason codes", verbatim, mapped
to the pod (ip targets) or the node (instance targets)."""

from __future__ import annotations

import pytest

from exporter.aws.config import AwsSettings
from exporter.aws.doctor import AwsDoctor
from exporter.model.results import Check, Reason, Status
from tests.aws.faults import patch_target_health
from tests.aws.helpers import diagnose, one, results, settings
from tests.aws.world import POD_IPS, World

# docs/aws.md, "Target health reason codes": reason, state, description AWS sends, the status lbdoctor reports
REFERENCE_TABLE = [
    ("Elb.RegistrationInProgress", "initial", "Target registration is in progress", Status.OK),
    ("Elb.InitialHealthChecking", "initial", "Initial health checks in progress", Status.OK),
    ("Target.ResponseCodeMismatch", "unhealthy", "Health checks failed with these codes: [503]", Status.FAIL),
    ("Target.Timeout", "unhealthy", "Request timed out", Status.FAIL),
    ("Target.FailedHealthChecks", "unhealthy", "Health checks failed", Status.FAIL),
    ("Elb.InternalError", "unhealthy", "Health checks failed due to an internal error", Status.FAIL),
    ("Elb.InternalError", "unavailable", None, Status.UNKNOWN),
    ("Target.NotRegistered", "unused", "Target is not registered to the target group", Status.WARN),
    ("Target.NotInUse", "unused", "Target group is not configured to receive traffic from the load balancer", Status.WARN),
    ("Target.InvalidState", "unused", "Target is in the stopped state", Status.FAIL),
    ("Target.IpUnusable", "unused", "The IP address cannot be used as a target, as it is in use by a load balancer", Status.FAIL),
    ("Target.DeregistrationInProgress", "draining", "Target deregistration is in progress", Status.OK),
    ("Target.HealthCheckDisabled", "unavailable", "Health checks are disabled", Status.WARN),
]


@pytest.mark.parametrize(("code", "state", "description", "status"), REFERENCE_TABLE)
async def test_every_reason_code_is_reported_verbatim_for_the_pod(
    world: World, monkeypatch: pytest.MonkeyPatch, code: str, state: str, description: str | None, status: Status
) -> None:
    """An ip target's state and reason reach elb_target_health unchanged, on the pod behind that IP."""
    patch_target_health(monkeypatch, {POD_IPS["web-2"]: (state, code, description)})
    round_ = await diagnose(world)
    result = one(round_, Check.ELB_TARGET_HEALTH, pod="web-2")
    assert result.reason is not None
    assert result.reason.value == code
    assert result.status is status
    assert state in result.message
    if description:
        assert description in result.message
    assert (result.object.kind, result.object.name) == ("Ingress", "web")
    row = next(r for r in round_.targets if r.target == POD_IPS["web-2"])
    assert (row.state, row.reason, row.pod, row.node) == (state, code, "web-2", "node-b")
    assert one(round_, Check.ELB_TARGET_HEALTH, pod="web-1").status is Status.OK


@pytest.mark.parametrize(
    ("code", "state", "status"),
    [("Target.InvalidState", "unused", Status.FAIL), ("Target.FailedHealthChecks", "unhealthy", Status.FAIL)],
)
async def test_instance_targets_are_reported_on_their_node(
    world: World, monkeypatch: pytest.MonkeyPatch, code: str, state: str, status: Status
) -> None:
    """An instance target's verdict names the node whose providerID carries that instance id."""
    patch_target_health(monkeypatch, {world.instances["node-b"]: (state, code, "as AWS says")})
    round_ = await diagnose(world)
    found = [r for r in results(round_, Check.ELB_TARGET_HEALTH) if r.reason is not None and r.reason.value == code]
    assert len(found) == 1
    assert found[0].status is status
    assert found[0].object.kind == "Service"
    assert found[0].message.startswith("node node-b")
    assert found[0].target is not None
    assert found[0].target.ip == "10.0.11.10"


async def test_states_and_reasons_newer_than_lbdoctor_are_kept_in_words(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    patch_target_health(
        monkeypatch,
        {POD_IPS["web-1"]: ("unhealthy", "Target.SomethingNew", "a reason from the future"), POD_IPS["web-2"]: ("weird", None, None)},
    )
    round_ = await diagnose(world)
    new_reason = one(round_, Check.ELB_TARGET_HEALTH, pod="web-1")
    assert (new_reason.status, new_reason.reason) == (Status.FAIL, Reason.ELB_UNKNOWN_REASON)
    assert "Target.SomethingNew" in new_reason.message
    new_state = one(round_, Check.ELB_TARGET_HEALTH, pod="web-2")
    assert (new_state.status, new_state.reason) == (Status.UNKNOWN, Reason.ELB_UNKNOWN_REASON)


async def test_unhealthy_draining_is_a_warning(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    patch_target_health(monkeypatch, {POD_IPS["web-1"]: ("unhealthy.draining", None, None)})
    round_ = await diagnose(world)
    assert one(round_, Check.ELB_TARGET_HEALTH, pod="web-1").status is Status.WARN


async def test_a_target_stuck_registering_turns_into_a_warning(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """initial is normal for a while; past the health-check schedule plus a grace it is a finding."""
    patch_target_health(monkeypatch, {POD_IPS["web-1"]: ("initial", "Elb.InitialHealthChecking", "Initial health checks in progress")})
    doctor = AwsDoctor(settings())
    try:
        first = await doctor.refresh(world.snapshot(), plan=world.plan(), now=1000.0, full=True)
        assert one(first, Check.ELB_TARGET_HEALTH, pod="web-1").status is Status.OK
        # ALB: 2 healthy checks every 15 s + 60 s grace = 105 s
        later = await doctor.refresh(world.snapshot(), plan=world.plan(), now=1000.0 + 106, full=True)
    finally:
        doctor.close()
    stuck = one(later, Check.ELB_TARGET_HEALTH, pod="web-1")
    assert (stuck.status, stuck.reason) == (Status.WARN, Reason.ELB_INITIAL_HEALTH_CHECKING)
    assert "after 106 s" in stuck.message


async def test_transitions_count_healthy_unhealthy_flips(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    verdicts = patch_target_health(monkeypatch, {})
    doctor = AwsDoctor(settings())
    rows = []
    try:
        for moment, verdict in ((1000.0, None), (1100.0, ("unhealthy", "Target.Timeout", "Request timed out")), (1200.0, None), (1300.0, ("draining", "Target.DeregistrationInProgress", None))):
            verdicts.pop(POD_IPS["web-1"], None)
            if verdict:
                verdicts[POD_IPS["web-1"]] = verdict
            round_ = await doctor.refresh(world.snapshot(), plan=world.plan(), now=moment, full=True)
            rows.append(next(r for r in round_.targets if r.target == POD_IPS["web-1"]))
    finally:
        doctor.close()
    assert [r.state for r in rows] == ["healthy", "unhealthy", "healthy", "draining"]
    assert [r.transitions for r in rows] == [0, 1, 2, 2]


async def test_a_target_no_pod_or_node_owns_is_reported(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A healthy target at an address no pod or node of the cluster has: traffic leaves the cluster."""
    world.elbv2.register_targets(TargetGroupArn=world.web_tg, Targets=[{"Id": "10.0.10.99", "Port": 8080}])
    world.ec2.create_network_interface(SubnetId=world.node_subnets[0], PrivateIpAddress="10.0.10.99", Groups=[world.cluster_sg])
    round_ = await diagnose(world)
    stray = one(round_, Check.ELB_TARGET_HEALTH, ip="10.0.10.99")
    assert (stray.status, stray.reason) == (Status.WARN, Reason.TARGET_NOT_IN_CLUSTER)


async def test_an_empty_target_group_is_a_warning(world: World) -> None:
    world.elbv2.deregister_targets(TargetGroupArn=world.web_tg, Targets=[{"Id": ip, "Port": 8080} for ip in (POD_IPS["web-1"], POD_IPS["web-2"])])
    round_ = await diagnose(world)
    empty = [r for r in results(round_, Check.ELB_TARGET_HEALTH) if r.reason is Reason.NO_REGISTERED_TARGETS]
    assert len(empty) == 1
    assert empty[0].object.name == "web"


def test_settings_need_a_cluster_name() -> None:
    with pytest.raises(ValueError, match="cluster name"):
        AwsSettings(cluster_name="")
