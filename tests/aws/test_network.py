"""network against moto: NACLs evaluated as AWS does and route tables, each fault on the right target."""

from __future__ import annotations

import pytest
from moto.ec2.models.route_tables import Route as MotoRoute

from exporter.model.results import Check, Reason, Status
from tests.aws.helpers import diagnose, one, reasons, results
from tests.aws.world import POD_IPS, World

LB_CIDRS = ("10.0.0.0/24", "10.0.1.0/24")


async def test_target_subnet_denying_the_health_check_port(world: World) -> None:
    """Rule 50 denies TCP 8080 from the VPC before rule 100 allows everything: lowest number wins."""
    world.nacl_entry(world.node_acl, 50, egress=False, allow=False, cidr="10.0.0.0/16", ports=(8080, 8080))
    round_ = await diagnose(world)
    for pod in ("web-1", "web-2"):
        found = results(round_, Check.NETWORK, pod=pod)
        assert reasons(found) == {"NaclDeniesHealthCheck"}
        assert all(f.status is Status.FAIL for f in found)
        assert all(world.node_acl in f.message and "rule 50" in f.message for f in found)
        # one finding per LB subnet the health checks come from
        assert {cidr for cidr in LB_CIDRS for f in found if cidr in f.message} == set(LB_CIDRS)
    # instance targets on 30080 are not affected
    assert {r.status for r in results(round_, Check.NETWORK) if r.object.kind == "Service"} == {Status.OK}


async def test_target_subnet_not_letting_answers_out(world: World) -> None:
    world.nacl_entry(world.node_acl, 90, egress=True, allow=False, cidr="0.0.0.0/0", ports=(1024, 65535))
    round_ = await diagnose(world)
    found = results(round_, Check.NETWORK, pod="web-1")
    assert reasons(found) == {"NaclDeniesReturnTraffic"}
    assert all("outbound" in f.message and "1024-65535" in f.message for f in found)


async def test_lb_subnet_not_letting_answers_in(world: World) -> None:
    world.nacl_entry(world.lb_acl, 90, egress=False, allow=False, cidr="10.0.10.0/24", ports=(1024, 65535))
    round_ = await diagnose(world)
    # only targets in 10.0.10.0/24 (web-1, node-a) are denied
    assert reasons(results(round_, Check.NETWORK, pod="web-1")) == {"NaclDeniesReturnTraffic"}
    assert one(round_, Check.NETWORK, pod="web-2").status is Status.OK
    node_a = list(results(round_, Check.NETWORK, ip="10.0.10.10"))
    assert reasons(node_a) == {"NaclDeniesReturnTraffic"}
    assert all(world.lb_acl in f.message and "inbound" in f.message for f in node_a)


async def test_lb_subnet_not_letting_health_checks_out(world: World) -> None:
    world.nacl_entry(world.lb_acl, 90, egress=True, allow=False, cidr="10.0.11.0/24", ports=(30000, 32767))
    round_ = await diagnose(world)
    node_b = results(round_, Check.NETWORK, ip="10.0.11.10")
    assert reasons(node_b) == {"NaclDeniesHealthCheck"}
    assert all("outbound TCP 30080" in f.message for f in node_b)
    assert one(round_, Check.NETWORK, ip="10.0.10.10").status is Status.OK


async def test_port_ranges_and_the_final_deny(world: World) -> None:
    """A custom NACL that allows only TCP 8000-8100 and ephemeral ports: the NLB's 30080 falls through to
    the final * rule; ALB targets pass."""
    world.ec2.delete_network_acl_entry(NetworkAclId=world.node_acl, RuleNumber=100, Egress=False)
    world.nacl_entry(world.node_acl, 100, egress=False, allow=True, cidr="10.0.0.0/16", ports=(8000, 8100))
    world.nacl_entry(world.node_acl, 110, egress=False, allow=True, cidr="10.0.0.0/16", ports=(1024, 65535), protocol="17")
    round_ = await diagnose(world)
    assert one(round_, Check.NETWORK, pod="web-1").status is Status.OK
    node_a = results(round_, Check.NETWORK, ip="10.0.10.10")
    assert reasons(node_a) == {"NaclDeniesHealthCheck"}
    assert all("final * rule" in f.message for f in node_a)


async def test_only_one_lb_subnet_allowed(world: World) -> None:
    """Inbound allowed from 10.0.0.0/24 only: health checks from the other LB subnet are denied."""
    world.ec2.delete_network_acl_entry(NetworkAclId=world.node_acl, RuleNumber=100, Egress=False)
    world.nacl_entry(world.node_acl, 100, egress=False, allow=True, cidr="10.0.0.0/24", ports=None, protocol="-1")
    round_ = await diagnose(world)
    found = results(round_, Check.NETWORK, pod="web-1")
    assert reasons(found) == {"NaclDeniesHealthCheck"}
    assert len(found) == 1
    assert "10.0.1.0/24" in found[0].message


async def test_an_all_protocols_deny_in_the_middle(world: World) -> None:
    """Protocol -1 deny for one LB subnet at 80, allow-all at 100: that subnet is cut off entirely."""
    world.nacl_entry(world.node_acl, 80, egress=False, allow=False, cidr="10.0.1.0/24", ports=None, protocol="-1")
    round_ = await diagnose(world)
    found = results(round_, Check.NETWORK, pod="web-2")
    assert reasons(found) == {"NaclDeniesHealthCheck"}
    assert "10.0.1.0/24" in found[0].message and "rule 80" in found[0].message


async def test_same_subnet_traffic_skips_nacls(world: World) -> None:
    """NACLs filter traffic crossing a subnet boundary only: an NLB and its target in one subnet whose NACL
    denies everything still talk (and a target group found by its tags alone is checked too)."""
    ec2, elbv2 = world.ec2, world.elbv2
    solo = ec2.create_subnet(VpcId=world.vpc, CidrBlock="10.0.2.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    deny_all = ec2.create_network_acl(VpcId=world.vpc)["NetworkAcl"]["NetworkAclId"]  # a custom NACL starts empty
    association = next(
        a["NetworkAclAssociationId"]
        for acl in ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [solo]}])["NetworkAcls"]
        for a in acl["Associations"]
        if a["SubnetId"] == solo
    )
    ec2.replace_network_acl_association(AssociationId=association, NetworkAclId=deny_all)
    ec2.create_network_interface(SubnetId=solo, PrivateIpAddress="10.0.2.50", Groups=[world.cluster_sg])
    world.allow(world.cluster_sg, {"IpProtocol": "tcp", "FromPort": 9000, "ToPort": 9000, "IpRanges": [{"CidrIp": "10.0.2.0/24"}]})
    nlb = elbv2.create_load_balancer(Name="solo", Subnets=[solo], Type="network")["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elbv2.create_target_group(
        Name="solo", Protocol="TCP", Port=9000, VpcId=world.vpc, TargetType="ip",
        Tags=[{"Key": "elbv2.k8s.aws/cluster", "Value": "c1"}, {"Key": "service.k8s.aws/stack", "Value": "shop/solo"}],
    )["TargetGroups"][0]["TargetGroupArn"]  # fmt: skip
    elbv2.create_listener(LoadBalancerArn=nlb, Protocol="TCP", Port=9000, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
    elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": "10.0.2.50", "Port": 9000}])
    round_ = await diagnose(world)
    found = one(round_, Check.NETWORK, ip="10.0.2.50")
    assert found.status is Status.OK
    assert (found.object.kind, found.object.namespace, found.object.name) == ("Service", "shop", "solo")
    assert one(round_, Check.SECURITY_GROUPS, ip="10.0.2.50").status is Status.OK


async def test_missing_local_route(world: World) -> None:
    world.ec2.delete_route(RouteTableId=world.node_rt, DestinationCidrBlock="10.0.0.0/16")
    round_ = await diagnose(world)
    found = results(round_, Check.NETWORK, pod="web-1")
    assert reasons(found) == {"MissingLocalRoute"}
    assert all(world.node_rt in f.message for f in found)


async def test_blackhole_route_on_the_path(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A more specific route for the LB subnets through an appliance ENI that was deleted: AWS marks it
    blackhole (moto does not track route state, so the property is patched to say what AWS says)."""
    appliance = world.ec2.create_network_interface(SubnetId=world.node_subnets[0], PrivateIpAddress="10.0.10.200")
    appliance_id = appliance["NetworkInterface"]["NetworkInterfaceId"]
    world.ec2.create_route(RouteTableId=world.node_rt, DestinationCidrBlock="10.0.0.0/23", NetworkInterfaceId=appliance_id)
    deleted: set[str] = set()
    monkeypatch.setattr(MotoRoute, "state", property(lambda self: "blackhole" if self.interface is not None and self.interface.id in deleted else "active"))
    round_ = await diagnose(world)
    # while the appliance exists, the path goes through it: a warning
    assert reasons(results(round_, Check.NETWORK, pod="web-1")) == {"RouteNotLocal"}
    deleted.add(appliance_id)
    round_ = await diagnose(world)
    found = results(round_, Check.NETWORK, pod="web-1")
    assert reasons(found) == {"BlackholeRoute"}
    assert all(f.status is Status.FAIL and appliance_id in f.message for f in found)
    assert one(round_, Check.NETWORK, ip="10.0.10.10").reason is Reason.BLACKHOLE_ROUTE


async def test_a_rule_for_one_address_inside_a_subnet_hits_only_that_target(world: World) -> None:
    """Subnets are evaluated once when no rule splits them; a /32 rule splits one, and stays exact."""
    world.nacl_entry(world.lb_acl, 20, egress=True, allow=False, cidr=f"{POD_IPS['web-1']}/32", ports=(8080, 8080))
    round_ = await diagnose(world)
    assert reasons(results(round_, Check.NETWORK, pod="web-1")) == {"NaclDeniesHealthCheck"}
    assert one(round_, Check.NETWORK, ip="10.0.10.10").status is Status.OK
    assert one(round_, Check.NETWORK, pod="web-2").status is Status.OK


async def test_an_nlb_traffic_port_is_left_to_its_clients(world: World) -> None:
    """An NLB without a security group may preserve client addresses: its traffic comes from clients, not
    its subnets, so only the health-check port (always from the LB's nodes) is held against its subnets."""
    from tests.aws.world import from_cidr

    world.elbv2.modify_target_group(TargetGroupArn=world.api_tg, HealthCheckPort="30081")
    world.revoke(world.cluster_sg, {**from_cidr("10.0.0.0/24", 30080), "IpRanges": [{"CidrIp": "10.0.0.0/24"}, {"CidrIp": "10.0.1.0/24"}]})
    world.allow(world.cluster_sg, {**from_cidr("10.0.0.0/23", 30081)})
    world.nacl_entry(world.node_acl, 50, egress=False, allow=False, cidr="10.0.0.0/16", ports=(30080, 30080))
    round_ = await diagnose(world)
    for check in (Check.SECURITY_GROUPS, Check.NETWORK):
        nodes = [r for r in results(round_, check) if r.target is not None and r.target.port == 30080]
        assert len(nodes) == 2
        assert {r.status for r in nodes} == {Status.OK}
    # the health-check port still is: close it and both nodes fail
    world.nacl_entry(world.node_acl, 40, egress=False, allow=False, cidr="10.0.0.0/16", ports=(30081, 30081))
    round_ = await diagnose(world)
    assert reasons([r for r in results(round_, Check.NETWORK) if r.target is not None and r.target.port == 30080]) == {"NaclDeniesHealthCheck"}
