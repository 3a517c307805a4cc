"""IPv6 target groups in moto: a target registered at a pod's IPv6 address is that pod, not a stranger."""

from __future__ import annotations

from dataclasses import replace

import pytest

from exporter.aws.doctor import AwsDoctor
from exporter.model.results import Check, Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from tests.aws.faults import patch_target_health
from tests.aws.helpers import results, settings
from tests.aws.world import CLUSTER, POD_IPS, World

V6 = "2600:1f14:abc:10::21"


async def test_ipv6_target_maps_to_its_dual_stack_pod(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    created = world.elbv2.create_target_group(
        Name="k8s-shop-web6-0a1b2c3d4e",
        Protocol="HTTP",
        Port=8080,
        VpcId=world.vpc,
        TargetType="ip",
        IpAddressType="ipv6",
        HealthCheckPath="/healthz",
        Tags=[
            {"Key": "elbv2.k8s.aws/cluster", "Value": CLUSTER},
            {"Key": "ingress.k8s.aws/stack", "Value": "shop/web"},
            {"Key": "ingress.k8s.aws/resource", "Value": "shop/web-web:80"},
        ],
    )["TargetGroups"][0]
    assert created.get("IpAddressType") == "ipv6"
    arn = created["TargetGroupArn"]
    world.elbv2.create_listener(
        LoadBalancerArn=world.alb, Protocol="HTTP", Port=81, DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}]
    )
    world.elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": V6, "Port": 8080}])
    patch_target_health(monkeypatch, {V6: ("unhealthy", "Target.Timeout", "Request timed out")})
    base = world.snapshot()
    web2 = base.pods["shop/web-2"]
    dual = replace(web2, pod_ips=(POD_IPS["web-2"], V6))
    snapshot = ClusterSnapshot.of(
        services=base.services.values(),
        ingresses=base.ingresses.values(),
        ingress_classes=base.ingress_classes.values(),
        pods=[dual if p.meta.name == "web-2" else p for p in base.pods.values()],
        nodes=base.nodes.values(),
        target_group_bindings=base.target_group_bindings.values(),
    )
    doctor = AwsDoctor(settings())
    try:
        round_ = await doctor.refresh(snapshot, plan=world.plan(snapshot), now=1000.0, full=True)
    finally:
        doctor.close()
    assert round_.aws.target_groups[arn].ip_address_type == "ipv6"
    found = [r for r in results(round_, Check.ELB_TARGET_HEALTH) if r.target is not None and r.target.ip == V6]
    assert [(r.status, r.reason, r.target.pod if r.target else None) for r in found] == [
        (Status.FAIL, Reason.TARGET_TIMEOUT, "web-2")
    ]
    assert found[0].message.startswith(f"pod web-2 ([{V6}]:8080)")
