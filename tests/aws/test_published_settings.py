"""Real target-group settings: drift is a finding, and the node agents probe with what AWS has."""

from __future__ import annotations

import json

import pytest

from exporter.lb.aws_settings import SCHEMA, DocumentError, apply, from_document
from exporter.lb.targets import node_targets
from exporter.model.objects import ObjectMeta, TargetGroupBinding
from exporter.model.results import Check, Reason, Status
from tests.aws.helpers import diagnose, results
from tests.aws.world import World


async def test_drift_is_reported_and_the_node_agents_probe_the_real_settings(world: World) -> None:
    world.elbv2.modify_target_group(TargetGroupArn=world.web_tg, HealthCheckPath="/ready", HealthCheckIntervalSeconds=30)
    round_ = await diagnose(world)
    drift = [r for r in results(round_, Check.ELB_TARGET_HEALTH) if r.reason is Reason.HEALTH_CHECK_DRIFT]
    assert len(drift) == 1
    assert drift[0].status is Status.WARN
    assert (drift[0].object.kind, drift[0].object.name) == ("Ingress", "web")
    assert "path /ready (annotations: /healthz)" in drift[0].message
    assert "interval 30s (annotations: 15s)" in drift[0].message
    assert not any(r.reason is Reason.HEALTH_CHECK_DRIFT and r.object.name == "api" for r in round_.results)

    # the cluster role serves the document; a node agent reads it (a JSON round trip) and merges it
    document = json.loads(json.dumps(round_.targetgroups_document("2026-01-01T00:00:00Z")))
    assert document["schema"] == SCHEMA
    checks = from_document(document)
    snapshot = world.snapshot()
    before = {t.pod: t for t in node_targets(world.plan(snapshot), snapshot, "node-a").targets}
    after = {t.pod: t for t in node_targets(apply(world.plan(snapshot), checks), snapshot, "node-a").targets}
    assert (before["web-1"].request.path, before["web-1"].interval) == ("/healthz", 15.0)
    assert (after["web-1"].request.path, after["web-1"].interval) == ("/ready", 30.0)
    assert after["api-1"] == before["api-1"]  # the NLB's real settings match its annotations


async def test_a_hand_made_target_group_gets_its_real_http_check(world: World) -> None:
    """A TargetGroupBinding the controller did not create: no annotations, so the node agent probes TCP until
    it learns the target group checks HTTP /status with 200-299."""
    arn = world.elbv2.create_target_group(
        Name="handmade", Protocol="HTTP", Port=8080, VpcId=world.vpc, TargetType="ip", HealthCheckProtocol="HTTP",
        HealthCheckPath="/status", Matcher={"HttpCode": "200-299"}, HealthCheckIntervalSeconds=20,
    )["TargetGroups"][0]["TargetGroupArn"]  # fmt: skip
    world.extra_bindings.append(TargetGroupBinding(ObjectMeta("shop", "handmade"), arn, "ip", "web", 80))
    round_ = await diagnose(world)
    checks = from_document(json.loads(json.dumps(round_.targetgroups_document("now"))))
    handmade = next(c for c in checks if c.arn == arn)
    assert (handmade.owner.kind, handmade.owner.name) == ("TargetGroupBinding", "handmade")
    snapshot = world.snapshot()
    before = [t for t in node_targets(world.plan(snapshot), snapshot, "node-a").targets if t.lb == "tgb"]
    after = [t for t in node_targets(apply(world.plan(snapshot), checks), snapshot, "node-a").targets if t.lb == "tgb"]
    assert [(t.request.protocol, t.interval) for t in before] == [("TCP", 30.0)]
    assert [(t.request.protocol, t.request.path, t.request.success_ranges, t.interval) for t in after] == [
        ("HTTP", "/status", ((200, 299),), 20.0)
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"schema": "something/v9"}, "not a lbdoctor.targetgroups/v1 document"),
        ({"schema": SCHEMA, "target_groups": {}}, "target_groups must be a list"),
        ({"schema": SCHEMA, "target_groups": [{"arn": "x"}]}, "needs an owner"),
        (
            {"schema": SCHEMA, "target_groups": [{"arn": "x", "owner": {}, "port": "traffic-port", "interval": "10"}]},
            "x: interval must be a number",
        ),
    ],
)
def test_a_bad_document_is_one_line(document: object, message: str) -> None:
    with pytest.raises(DocumentError, match=message) as raised:
        from_document(document)
    assert "\n" not in str(raised.value)
