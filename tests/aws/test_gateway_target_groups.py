"""A Gateway API target group in AWS is the route's: the controller's Gateway tags are mapped back to the route,
its Service and port, so the load balancer's verdict lands on the object lbdoctor probes for."""

from __future__ import annotations

import pytest

from exporter.aws.doctor import AwsDoctor
from exporter.kube import convert_gateway
from exporter.model.gateway import FrontEnds
from exporter.model.results import Check, ObjectRef, Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from tests import gateway_objects as g
from tests.aws.faults import patch_target_health
from tests.aws.helpers import results, settings
from tests.aws.world import CLUSTER, POD_IPS, World


def with_gateway(snapshot: ClusterSnapshot) -> ClusterSnapshot:
    front = FrontEnds.of(
        gateway_classes=[convert_gateway.gateway_class(g.gateway_class())],
        gateways=[convert_gateway.gateway(g.gateway("edge"))],
        routes=[convert_gateway.route("HTTPRoute")(g.route(name="web-route", gateway_name="edge"))],
        target_group_configurations=[
            convert_gateway.target_group_configuration(g.tgc("web", service="web", default={"targetType": "ip"}))
        ],
    )
    return ClusterSnapshot.of(
        services=snapshot.services.values(),
        ingresses=snapshot.ingresses.values(),
        ingress_classes=snapshot.ingress_classes.values(),
        pods=snapshot.pods.values(),
        nodes=snapshot.nodes.values(),
        target_group_bindings=snapshot.target_group_bindings.values(),
        front_ends=front,
    )


async def test_gateway_target_group_is_reported_on_the_route(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = world.elbv2.create_target_group(
        Name="k8s-shop-webroute-1a2b3c4d5e",
        Protocol="HTTP",
        Port=8080,
        VpcId=world.vpc,
        TargetType="ip",
        HealthCheckProtocol="HTTP",
        HealthCheckPath="/",
        Matcher={"HttpCode": "200-399"},
        Tags=[
            {"Key": "elbv2.k8s.aws/cluster", "Value": CLUSTER},
            {"Key": "gateway.k8s.aws.alb/stack", "Value": "shop/edge"},
            {"Key": "gateway.k8s.aws.alb/resource", "Value": "shop/edge:shop-web-route:HTTPRoute-shop-web:8080"},
        ],
    )["TargetGroups"][0]["TargetGroupArn"]
    world.elbv2.create_listener(
        LoadBalancerArn=world.alb, Protocol="HTTP", Port=8080, DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}]
    )
    world.elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": POD_IPS["web-1"], "Port": 8080}])
    patch_target_health(monkeypatch, {POD_IPS["web-1"]: ("unhealthy", "Target.ResponseCodeMismatch", "[404]")})
    snapshot = with_gateway(world.snapshot())
    doctor = AwsDoctor(settings())
    try:
        round_ = await doctor.refresh(snapshot, plan=world.plan(snapshot), now=1000.0, full=True)
    finally:
        doctor.close()
    route = ObjectRef("HTTPRoute", "shop", "web-route")
    found = [r for r in results(round_, Check.ELB_TARGET_HEALTH) if r.object == route]
    assert [(r.status, r.reason) for r in found if r.target is not None] == [
        (Status.FAIL, Reason.TARGET_RESPONSE_CODE_MISMATCH)
    ]
    row = next(r for r in round_.targets if r.target_group == "k8s-shop-webroute-1a2b3c4d5e")
    assert (row.namespace, row.service, row.pod) == ("shop", "web", "web-1")
    # The real health check the node agents get is tied to the route's backend.
    [real] = [c for c in round_.real_health_checks if c.target_group == "k8s-shop-webroute-1a2b3c4d5e"]
    assert real.owner == route and real.service == "web" and real.success_codes == "200-399"
