"""security_groups against moto: each fault is reported on the right target with the right reason."""

from __future__ import annotations

from exporter.model.results import Check, Reason, Status
from tests.aws.helpers import diagnose, one, reasons, results
from tests.aws.world import CLUSTER_SG_TAG, POD_IPS, World, from_cidr, from_sg


async def test_lb_security_group_missing_from_the_pods_is_health_check_port_not_allowed(world: World) -> None:
    """The ALB's SG no longer allowed on 8080 (traffic port = health-check port): both pods fail."""
    world.revoke(world.cluster_sg, from_sg(world.lb_sg, 8080))
    round_ = await diagnose(world)
    for pod in ("web-1", "web-2"):
        found = one(round_, Check.SECURITY_GROUPS, pod=pod)
        assert (found.status, found.reason) == (Status.FAIL, Reason.HEALTH_CHECK_PORT_NOT_ALLOWED)
        assert world.cluster_sg in found.message
        assert world.lb_sg in found.message
        assert "TCP 8080" in found.message
        assert world.lb_sg in found.remedy
    # the NLB's instance targets are untouched
    assert {r.status for r in results(round_, Check.SECURITY_GROUPS) if r.object.kind == "Service"} == {Status.OK}


async def test_a_separate_health_check_port_is_checked_on_its_own(world: World) -> None:
    """HC port 8081 open but traffic port 8080 closed -> TrafficPortNotAllowed; and the other way round."""
    world.elbv2.modify_target_group(TargetGroupArn=world.web_tg, HealthCheckPort="8081")
    world.revoke(world.cluster_sg, from_sg(world.lb_sg, 8080))
    world.allow(world.cluster_sg, from_sg(world.lb_sg, 8081))
    round_ = await diagnose(world)
    found = one(round_, Check.SECURITY_GROUPS, pod="web-1")
    assert (found.status, found.reason) == (Status.FAIL, Reason.TRAFFIC_PORT_NOT_ALLOWED)
    assert "TCP 8080" in found.message

    world.revoke(world.cluster_sg, from_sg(world.lb_sg, 8081))
    world.allow(world.cluster_sg, from_sg(world.lb_sg, 8080))
    round_ = await diagnose(world)
    found = one(round_, Check.SECURITY_GROUPS, pod="web-1")
    assert (found.status, found.reason) == (Status.FAIL, Reason.HEALTH_CHECK_PORT_NOT_ALLOWED)
    assert "TCP 8081" in found.message


async def test_two_cluster_tagged_groups_on_one_eni(world: World) -> None:
    """The controller's most reported failure: more than one kubernetes.io/cluster/<name> SG on an ENI."""
    second = world.security_group("also-tagged", {CLUSTER_SG_TAG: "owned"})
    world.ec2.modify_network_interface_attribute(NetworkInterfaceId=world.pod_enis["web-1"], Groups=[world.cluster_sg, second])
    round_ = await diagnose(world)
    found = results(round_, Check.SECURITY_GROUPS, pod="web-1")
    assert reasons(found) == {"MultipleClusterTaggedSecurityGroups"}
    assert found[0].status is Status.FAIL
    assert world.cluster_sg in found[0].message
    assert second in found[0].message
    assert one(round_, Check.SECURITY_GROUPS, pod="web-2").status is Status.OK


async def test_several_groups_none_tagged(world: World) -> None:
    untagged = world.security_group("plain")
    world.allow(untagged, from_sg(world.lb_sg, 8080))
    world.ec2.modify_network_interface_attribute(NetworkInterfaceId=world.pod_enis["web-2"], Groups=[untagged, world.security_group("plain-2")])
    round_ = await diagnose(world)
    found = one(round_, Check.SECURITY_GROUPS, pod="web-2")
    assert (found.status, found.reason) == (Status.WARN, Reason.NO_CLUSTER_TAGGED_SECURITY_GROUP)


async def test_nlb_without_security_group_needs_every_lb_subnet(world: World) -> None:
    """An NLB without an SG sends health checks from its subnets; one subnet missing is a failure naming it."""
    world.revoke(world.cluster_sg, {**from_cidr("10.0.0.0/24", 30080), "IpRanges": [{"CidrIp": "10.0.0.0/24"}, {"CidrIp": "10.0.1.0/24"}]})
    world.allow(world.cluster_sg, from_cidr("10.0.0.0/24", 30080))
    round_ = await diagnose(world)
    nlb = [r for r in results(round_, Check.SECURITY_GROUPS) if r.object.kind == "Service" and r.target is not None and r.target.port == 30080]
    assert len(nlb) == 2
    for found in nlb:
        assert (found.status, found.reason) == (Status.FAIL, Reason.HEALTH_CHECK_PORT_NOT_ALLOWED)
        assert "10.0.1.0/24" in found.message
        assert "10.0.1.0/24" in found.remedy


async def test_a_vpc_wide_cidr_covers_the_lb_subnets(world: World) -> None:
    world.revoke(world.cluster_sg, {**from_cidr("10.0.0.0/24", 30080), "IpRanges": [{"CidrIp": "10.0.0.0/24"}, {"CidrIp": "10.0.1.0/24"}]})
    world.allow(world.cluster_sg, {"IpProtocol": "tcp", "FromPort": 30000, "ToPort": 32767, "IpRanges": [{"CidrIp": "10.0.0.0/16"}]})
    round_ = await diagnose(world)
    assert {r.status for r in results(round_, Check.SECURITY_GROUPS)} == {Status.OK}


async def test_all_protocols_rule_allows_every_port(world: World) -> None:
    """IpProtocol -1 (all traffic) from the LB's SG allows any traffic and health-check port."""
    world.revoke(world.cluster_sg, from_sg(world.lb_sg, 8080))
    world.allow(world.cluster_sg, {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": world.lb_sg}]})
    round_ = await diagnose(world)
    found = one(round_, Check.SECURITY_GROUPS, pod="web-1")
    assert found.status is Status.OK
    assert "all traffic" in found.message


async def test_a_prefix_list_rule_is_not_taken_on_trust(world: World) -> None:
    prefix_list = world.ec2.create_managed_prefix_list(
        PrefixListName="lbs", MaxEntries=5, AddressFamily="IPv4", Entries=[{"Cidr": "10.0.0.0/23"}]
    )["PrefixList"]["PrefixListId"]
    world.revoke(world.cluster_sg, from_sg(world.lb_sg, 8080))
    world.allow(world.cluster_sg, {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "PrefixListIds": [{"PrefixListId": prefix_list}]})
    round_ = await diagnose(world)
    found = one(round_, Check.SECURITY_GROUPS, pod="web-1")
    assert (found.status, found.reason) == (Status.UNKNOWN, Reason.PREFIX_LIST_NOT_VERIFIED)
    assert prefix_list in found.message


async def test_node_groups_that_do_not_allow_each_other(world: World) -> None:
    """node-b moves to its own node group SG that lets in neither node-a's group nor itself: kube-proxy on
    node-a cannot forward NodePort traffic to pods on node-b (and vice versa)."""
    isolated = world.security_group("isolated-ng", {CLUSTER_SG_TAG: "owned"})
    world.allow(isolated, from_cidr("10.0.0.0/23", 30080))
    node_b_eni = world.ec2.describe_instances(InstanceIds=[world.instances["node-b"]])["Reservations"][0]["Instances"][0]["NetworkInterfaces"][0]["NetworkInterfaceId"]
    world.ec2.modify_network_interface_attribute(NetworkInterfaceId=node_b_eni, Groups=[isolated])
    world.ec2.modify_instance_attribute(InstanceId=world.instances["node-b"], Groups=[isolated])
    round_ = await diagnose(world)
    # api-1 runs on node-a (cluster-sg, which allows only itself): node-b's group cannot reach it
    blocked = [r for r in results(round_, Check.SECURITY_GROUPS, pod="api-1") if r.reason is Reason.NODE_GROUP_TRAFFIC_BLOCKED]
    assert len(blocked) == 1
    assert blocked[0].status is Status.FAIL
    assert isolated in blocked[0].message
    assert "TCP 8080" in blocked[0].message
    assert (blocked[0].object.kind, blocked[0].object.name) == ("Service", "api")


async def test_node_groups_that_allow_each_other_are_ok(world: World) -> None:
    round_ = await diagnose(world)
    found = one(round_, Check.SECURITY_GROUPS, pod="api-1")
    assert found.status is Status.OK
    assert "every node group" in found.message


async def test_a_pod_ip_no_eni_holds(world: World) -> None:
    """An overlay CNI's pod IP: the LB cannot reach an address no ENI owns."""
    world.ec2.delete_network_interface(NetworkInterfaceId=world.pod_enis["web-1"])
    round_ = await diagnose(world)
    for check in (Check.SECURITY_GROUPS, Check.NETWORK):
        found = one(round_, check, pod="web-1")
        assert (found.status, found.reason) == (Status.WARN, Reason.TARGET_INTERFACE_NOT_FOUND)
        assert POD_IPS["web-1"] in found.message
