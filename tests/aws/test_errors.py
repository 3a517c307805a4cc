"""When AWS says no: denied, throttled, no credentials, paged answers, vanishing and foreign target groups.

Denials are real (moto enforcing IAM); throttling and paging, which moto cannot produce, come from
botocore's Stubber replaying moto's own answers with the fault put in.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from exporter.aws.doctor import AwsDoctor
from exporter.model.results import Check, Reason, Status
from tests.aws.helpers import ErrorLog, diagnose, enforce_iam, iam_user, one, results, settings
from tests.aws.test_iam_policy import policy
from tests.aws.world import POD_IPS, REGION, World, from_sg, pod


def _without(action: str) -> dict[str, Any]:
    document = json.loads(json.dumps(policy()))
    for statement in document["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a != action]
    return document


async def _as_user(world: World, monkeypatch: pytest.MonkeyPatch, document: dict[str, Any]) -> Any:
    key, secret = iam_user(world, document)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    enforce_iam(world)
    return await diagnose(world)


async def test_denied_target_health_makes_only_that_check_unknown(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    round_ = await _as_user(world, monkeypatch, _without("elasticloadbalancing:DescribeTargetHealth"))
    elb = results(round_, Check.ELB_TARGET_HEALTH)
    assert {(r.status, r.reason) for r in elb} == {(Status.UNKNOWN, Reason.AWS_ACCESS_DENIED)}
    assert {r.object.name for r in elb} == {"web", "api"}
    assert all("elasticloadbalancing:DescribeTargetHealth" in r.message for r in elb)
    assert all("elasticloadbalancing:DescribeTargetHealth" in r.remedy for r in elb)
    assert round_.aws.api_requests[("DescribeTargetHealth", "access_denied")] == 2
    # the rest of the picture was still read
    assert set(round_.aws.target_groups) == {world.web_tg, world.api_tg}
    assert round_.aws.network_acls


async def test_denied_nacls_make_only_the_network_check_unknown(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    round_ = await _as_user(world, monkeypatch, _without("ec2:DescribeNetworkAcls"))
    network = results(round_, Check.NETWORK)
    assert len(network) == 4
    assert {(r.status, r.reason) for r in network} == {(Status.UNKNOWN, Reason.AWS_ACCESS_DENIED)}
    assert all("ec2:DescribeNetworkAcls" in r.message for r in network)
    for check in (Check.ELB_TARGET_HEALTH, Check.SECURITY_GROUPS):
        assert {r.status for r in results(round_, check)} == {Status.OK}


async def test_no_credentials_at_all(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """No keys, no profile, no IRSA, no instance metadata: every AWS check is unknown and says why."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    errors = ErrorLog()
    round_ = await diagnose(world, errors=errors)
    assert ("aws", "no_credentials") in errors.seen
    elb = results(round_, Check.ELB_TARGET_HEALTH)
    assert {(r.status, r.reason) for r in elb} == {(Status.UNKNOWN, Reason.AWS_CREDENTIALS_MISSING)}
    assert {r.object.name for r in elb} == {"web", "api"}  # known from the TargetGroupBindings alone
    assert all("elasticloadbalancing:DescribeTargetHealth" in r.message and "IRSA" in r.remedy for r in elb)
    assert round_.aws.api_requests[("DescribeTargetGroups", "no_credentials")] == 1


def _answers(world: World) -> dict[str, Any]:
    """moto's real answers to the ELBv2 calls of one round, to replay through the Stubber."""
    real = boto3.client("elbv2", region_name=REGION)

    def clean(answer: dict[str, Any]) -> dict[str, Any]:
        answer.pop("ResponseMetadata", None)
        return answer

    groups = real.describe_target_groups()["TargetGroups"]
    return {
        "groups": sorted(groups, key=lambda g: g["TargetGroupArn"]),
        "tags": clean(real.describe_tags(ResourceArns=sorted(g["TargetGroupArn"] for g in groups))),
        "lbs": clean(real.describe_load_balancers(LoadBalancerArns=sorted({world.alb, world.nlb}))),
        "health": {g["TargetGroupArn"]: clean(real.describe_target_health(TargetGroupArn=g["TargetGroupArn"])) for g in groups},
    }


async def test_throttling_and_paging_through_the_stubber(world: World) -> None:
    """DescribeTargetGroups answers in two pages (the second asked with the first's marker); the api
    target group's DescribeTargetHealth is throttled: only its results are unknown, and the next round
    (the throttled group is due first) recovers."""
    answers = _answers(world)
    elbv2 = boto3.client("elbv2", region_name=REGION)
    stubber = Stubber(elbv2)
    first, second = answers["groups"]
    stubber.add_response("describe_target_groups", {"TargetGroups": [first], "NextMarker": "page-2"}, {"PageSize": 400})
    stubber.add_response("describe_target_groups", {"TargetGroups": [second]}, {"PageSize": 400, "Marker": "page-2"})
    stubber.add_response("describe_tags", answers["tags"], None)
    stubber.add_response("describe_load_balancers", answers["lbs"], None)
    api, web = sorted(answers["health"])  # due in ARN order: k8s-shop-api before k8s-shop-web
    assert "k8s-shop-api" in api
    stubber.add_client_error(
        "describe_target_health", "Throttling", "Rate exceeded", 400, expected_params={"TargetGroupArn": api}
    )
    stubber.add_response("describe_target_health", answers["health"][web], {"TargetGroupArn": web})
    stubber.add_response("describe_target_health", answers["health"][api], {"TargetGroupArn": api})
    stubber.activate()

    def client(service: str) -> Any:
        return elbv2 if service == "elbv2" else boto3.client(service, region_name=REGION)

    doctor = AwsDoctor(settings(workers=1), client_factory=client)
    try:
        throttled = await doctor.refresh(world.snapshot(), plan=world.plan(), now=1000.0)
        recovered = await doctor.refresh(world.snapshot(), plan=world.plan(), now=1020.0)
    finally:
        doctor.close()
    stubber.assert_no_pending_responses()
    assert set(throttled.aws.target_groups) == {world.web_tg, world.api_tg}
    api_results = [r for r in throttled.results if r.check is Check.ELB_TARGET_HEALTH and r.object.name == "api"]
    assert [(r.status, r.reason) for r in api_results] == [(Status.UNKNOWN, Reason.AWS_THROTTLED)]
    assert "elasticloadbalancing:DescribeTargetHealth" in api_results[0].message
    assert one(throttled, Check.ELB_TARGET_HEALTH, pod="web-1").status is Status.OK
    assert throttled.aws.api_requests[("DescribeTargetHealth", "throttled")] == 1
    assert {r.status for r in results(recovered, Check.ELB_TARGET_HEALTH) if r.object.name == "api"} == {Status.OK}


async def test_a_bound_target_group_deleted_between_rounds(world: World) -> None:
    """The listing saw it, DescribeTargetHealth no longer does: the binding points at nothing."""
    doctor = AwsDoctor(settings())
    try:
        await doctor.refresh(world.snapshot(), plan=world.plan(), now=1000.0, full=True)
        listener = world.elbv2.describe_listeners(LoadBalancerArn=world.alb)["Listeners"][0]["ListenerArn"]
        world.elbv2.delete_listener(ListenerArn=listener)
        world.elbv2.delete_target_group(TargetGroupArn=world.web_tg)
        later = await doctor.refresh(world.snapshot(), plan=world.plan(), now=1000.0 + 61)
    finally:
        doctor.close()
    gone = [r for r in results(later, Check.ELB_TARGET_HEALTH) if r.object.name == "web"]
    assert [(r.status, r.reason) for r in gone] == [(Status.FAIL, Reason.TARGET_GROUP_NOT_FOUND)]
    assert "k8s-shop-web" in gone[0].message
    assert {r.status for r in results(later, Check.ELB_TARGET_HEALTH) if r.object.name == "api"} == {Status.OK}


async def test_a_region_without_the_target_groups(world: World) -> None:
    """Pointed at an empty Region: the bindings' target groups are not found there, and it says so."""
    round_ = await diagnose(world, region="eu-west-1")
    found = results(round_, Check.ELB_TARGET_HEALTH)
    assert {(r.status, r.reason) for r in found} == {(Status.FAIL, Reason.TARGET_GROUP_NOT_FOUND)}
    assert all("eu-west-1" in r.message for r in found)
    assert ("DescribeTargetHealth", "success") not in round_.aws.api_requests


async def test_lambda_target_groups_are_skipped_with_a_reason(world: World) -> None:
    world.elbv2.create_target_group(
        Name="k8s-shop-fn", TargetType="lambda", Tags=[{"Key": "elbv2.k8s.aws/cluster", "Value": "c1"}, {"Key": "service.k8s.aws/stack", "Value": "shop/fn"}]
    )
    round_ = await diagnose(world)
    skipped = [r for r in results(round_, Check.ELB_TARGET_HEALTH) if r.object.name == "fn"]
    assert [(r.status, r.reason) for r in skipped] == [(Status.UNKNOWN, Reason.UNSUPPORTED_TARGET_TYPE)]
    assert round_.aws.api_requests[("DescribeTargetHealth", "success")] == 2  # never asked for the lambda one


async def test_target_groups_of_other_clusters_are_ignored(world: World) -> None:
    world.elbv2.create_target_group(
        Name="k8s-other-x", Protocol="HTTP", Port=80, VpcId=world.vpc, TargetType="ip", Tags=[{"Key": "elbv2.k8s.aws/cluster", "Value": "someone-else"}]
    )
    round_ = await diagnose(world)
    assert set(round_.aws.target_groups) == {world.web_tg, world.api_tg}


async def test_a_target_outside_the_vpc(world: World) -> None:
    """An IP target in a peered network: its SGs and NACLs are not lbdoctor's to see, and it says so."""
    world.elbv2.register_targets(TargetGroupArn=world.web_tg, Targets=[{"Id": "192.168.7.7", "Port": 8080}])
    round_ = await diagnose(world)
    for check in (Check.SECURITY_GROUPS, Check.NETWORK):
        found = one(round_, check, ip="192.168.7.7")
        assert (found.status, found.reason) == (Status.UNKNOWN, Reason.TARGET_OUTSIDE_VPC)
    assert one(round_, Check.SECURITY_GROUPS, pod="web-1").status is Status.OK


async def test_ipv6_targets(world: World) -> None:
    """An IPv6 ip target: found by its ENI's IPv6 address (in whatever spelling AWS uses), checked against
    the LB subnets' IPv6 CIDRs."""
    association = world.ec2.associate_vpc_cidr_block(VpcId=world.vpc, AmazonProvidedIpv6CidrBlock=True)
    vpc6 = association["Ipv6CidrBlockAssociation"]["Ipv6CidrBlock"]  # a /56
    sixty_fours = ipaddress.ip_network(vpc6).subnets(new_prefix=64)
    subnets6 = {}
    for subnet, cidr in zip([*world.lb_subnets, world.node_subnets[0]], sixty_fours, strict=False):
        world.ec2.associate_subnet_cidr_block(SubnetId=subnet, Ipv6CidrBlock=str(cidr))
        subnets6[subnet] = str(cidr)
    target_cidr = subnets6[world.node_subnets[0]]
    address = target_cidr.replace("::/64", "::0021")
    world.ec2.create_network_interface(SubnetId=world.node_subnets[0], Groups=[world.cluster_sg], Ipv6Addresses=[{"Ipv6Address": address}])
    # only an IPv6 range lets the ALB in now: it must cover the LB subnets' IPv6 CIDRs, and IPv4 targets fail
    world.revoke(world.cluster_sg, from_sg(world.lb_sg, 8080))
    world.allow(world.cluster_sg, {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "Ipv6Ranges": [{"CidrIpv6": vpc6}]})
    world.elbv2.register_targets(TargetGroupArn=world.web_tg, Targets=[{"Id": address.upper(), "Port": 8080}])
    world.extra_pods.append(pod("web-6", "web", "node-a", ip=address))
    round_ = await diagnose(world)
    elb = one(round_, Check.ELB_TARGET_HEALTH, pod="web-6")
    assert elb.status is Status.OK
    sg = one(round_, Check.SECURITY_GROUPS, pod="web-6")
    assert sg.status is Status.OK, sg.message
    assert vpc6 in sg.message
    # the world's NACLs allow 0.0.0.0/0 only: IPv6 needs rules of its own, so AWS would drop it all
    assert {r.reason for r in results(round_, Check.NETWORK, pod="web-6")} == {
        Reason.NACL_DENIES_HEALTH_CHECK,
        Reason.NACL_DENIES_RETURN_TRAFFIC,
    }
    for acl in (world.lb_acl, world.node_acl):
        for egress in (False, True):
            world.ec2.create_network_acl_entry(
                NetworkAclId=acl, RuleNumber=101, Protocol="-1", RuleAction="allow", Egress=egress, Ipv6CidrBlock="::/0"
            )
    round_ = await diagnose(world)
    assert one(round_, Check.NETWORK, pod="web-6").status is Status.OK
    assert one(round_, Check.SECURITY_GROUPS, ip=POD_IPS["web-1"]).reason is Reason.HEALTH_CHECK_PORT_NOT_ALLOWED


async def test_diagnose_can_tell_whether_credentials_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    doctor = AwsDoctor(settings())
    try:
        assert await doctor.api.credential_source() == "env"
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        assert await doctor.api.credential_source() is None
    finally:
        doctor.close()


async def test_a_target_group_deleted_between_listing_and_tags(world: World) -> None:
    """DescribeTags fails the whole batch when one ARN is gone: the batch is asked ARN by ARN and the
    vanished one is left out, not the whole cluster's target groups."""
    answers = _answers(world)
    elbv2 = boto3.client("elbv2", region_name=REGION)
    stubber = Stubber(elbv2)
    api_group, web_group = answers["groups"]
    api, web = api_group["TargetGroupArn"], web_group["TargetGroupArn"]
    gone = {"Code": "TargetGroupNotFound", "Message": "One or more target groups not found"}
    stubber.add_response("describe_target_groups", {"TargetGroups": [api_group, web_group]}, None)
    stubber.add_client_error("describe_tags", gone["Code"], gone["Message"], 400, expected_params={"ResourceArns": [api, web]})
    stubber.add_client_error("describe_tags", gone["Code"], gone["Message"], 400, expected_params={"ResourceArns": [api]})
    web_tags = [d for d in answers["tags"]["TagDescriptions"] if d["ResourceArn"] == web]
    stubber.add_response("describe_tags", {"TagDescriptions": web_tags}, {"ResourceArns": [web]})
    stubber.add_response("describe_load_balancers", {"LoadBalancers": [lb for lb in answers["lbs"]["LoadBalancers"] if lb["LoadBalancerArn"] == world.alb]}, None)
    stubber.add_response("describe_target_health", answers["health"][web], {"TargetGroupArn": web})
    stubber.activate()
    snapshot = world.snapshot()
    unbound = type(snapshot).of(
        services=snapshot.services.values(), ingresses=snapshot.ingresses.values(), pods=snapshot.pods.values(),
        nodes=snapshot.nodes.values(), ingress_classes=snapshot.ingress_classes.values(),
    )  # fmt: skip
    doctor = AwsDoctor(settings(workers=1), client_factory=lambda s: elbv2 if s == "elbv2" else boto3.client(s, region_name=REGION))
    try:
        round_ = await doctor.refresh(unbound, plan=world.plan(), now=1000.0, full=True)
    finally:
        doctor.close()
    stubber.assert_no_pending_responses()
    assert set(round_.aws.target_groups) == {web}  # found by its tags; the vanished one is gone, silently
    assert not round_.aws.problems
    assert one(round_, Check.ELB_TARGET_HEALTH, pod="web-1").status is Status.OK


class _Garbled:
    """AWS answers with entries missing their identifiers: nothing real produces these, so a stand-in does."""

    def __init__(self, world: World) -> None:
        self.meta = boto3.client("elbv2", region_name=REGION).meta
        self._world = world

    def describe_target_groups(self, **_: Any) -> dict[str, Any]:
        good = {"TargetGroupArn": self._world.web_tg, "TargetGroupName": "k8s-shop-web", "TargetType": "ip", "VpcId": self._world.vpc}
        return {"TargetGroups": [{"TargetGroupName": "no-arn"}, good, "not even a mapping"]}

    def describe_tags(self, ResourceArns: list[str]) -> dict[str, Any]:
        return {"TagDescriptions": [{"ResourceArn": a, "Tags": [{"Key": "elbv2.k8s.aws/cluster", "Value": "c1"}]} for a in ResourceArns]}

    def describe_load_balancers(self, **_: Any) -> dict[str, Any]:
        return {"LoadBalancers": []}

    def describe_target_health(self, **_: Any) -> dict[str, Any]:
        return {
            "TargetHealthDescriptions": [
                {"Target": {"Port": 8080}, "TargetHealth": {"State": "healthy"}},
                {"Target": {"Id": POD_IPS["web-1"], "Port": 8080}, "TargetHealth": {"State": "unhealthy", "Reason": "Target.Timeout"}},
            ]
        }


async def test_malformed_answers_are_counted_and_the_rest_is_used(world: World) -> None:
    errors = ErrorLog()
    garbled = _Garbled(world)
    doctor = AwsDoctor(
        settings(), errors=errors, client_factory=lambda s: garbled if s == "elbv2" else boto3.client(s, region_name=REGION)
    )
    try:
        round_ = await doctor.refresh(world.snapshot(), plan=world.plan(), now=1000.0, full=True)
    finally:
        doctor.close()
    # the group without an ARN, the entry that is not a mapping, the target without an id
    assert errors.seen.count(("aws", "malformed")) == 3
    assert set(round_.aws.target_groups) == {world.web_tg}
    result = one(round_, Check.ELB_TARGET_HEALTH, pod="web-1")
    assert (result.status, result.reason) == (Status.FAIL, Reason.TARGET_TIMEOUT)


async def test_denials_are_not_retried_every_round(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """After one refusal for lack of credentials, lbdoctor waits for the next topology refresh instead of
    spending its whole budget on refusals, and keeps saying why."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    doctor = AwsDoctor(settings(workers=1))
    try:
        rounds = [await doctor.refresh(world.snapshot(), plan=world.plan(), now=1000.0 + t) for t in (0, 20, 40, 301)]
    finally:
        doctor.close()
    asked = [r.aws.api_requests.get(("DescribeTargetHealth", "no_credentials"), 0) for r in rounds]
    listed = [r.aws.api_requests.get(("DescribeTargetGroups", "no_credentials"), 0) for r in rounds]
    assert asked == [1, 1, 1, 2]
    assert listed == [1, 1, 1, 2]
    for round_ in rounds:
        assert {(r.status, r.reason) for r in results(round_, Check.ELB_TARGET_HEALTH)} == {
            (Status.UNKNOWN, Reason.AWS_CREDENTIALS_MISSING)
        }
