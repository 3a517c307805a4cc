"""The causal rules on real results: moto for AWS, real loopback apps for the node agents' probes, real
iptables rules for kube-proxy. Each case seeds one fault and asserts which result the LB's verdict (or
another effect) names as its cause, with the remedy pointing at it.

A round is linked as the cluster role links it: its object checks and the AWS checks, with the node
agents' failing results read back from their JSON (``results_json`` → ``results_from_json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from moto.ec2.models.route_tables import Route as MotoRoute

from exporter.checks import health_probe
from exporter.checks.causes import link_round, order
from exporter.checks.cluster import cluster_results
from exporter.checks.controller import ControllerLocation
from exporter.dataplane.offline import analyse
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.targets import ProbeTarget, TargetStatus, node_targets
from exporter.lb.thresholds import PredictedHealth
from exporter.model.objects import Deployment, Endpoint, EndpointSlice, ObjectMeta
from exporter.model.probe import ProbeOutcome
from exporter.model.results import Check, CheckResult, Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from exporter.probes import probe_http, probe_tcp
from exporter.report import results_from_json, results_json
from tests.aws.faults import patch_target_health
from tests.aws.helpers import settings
from tests.aws.world import API_SERVICE, NODE_IPS, POD_IPS, World
from tests.conftest import next_ip
from tests.dataplane.conftest import Netns, _netns  # noqa: F401  (the netns fixture)
from tests.dataplane.generator import Ep, Svc, api_objects, iptables_restore
from tests.servers import Handler, Server, respond, unused_port

TIMEOUT = ("unhealthy", "Target.Timeout", "Request timed out")
FAILED = ("unhealthy", "Target.FailedHealthChecks", "Health checks failed")
MISMATCH = ("unhealthy", "Target.ResponseCodeMismatch", "Health checks failed with these codes: [404]")


async def aws_round(
    world: World, snapshot: ClusterSnapshot | None = None, probes: Sequence[TargetStatus] = ()
) -> tuple[CheckResult, ...]:
    """The AWS checks of one full round, correlated with the node agents' probe states as the cluster role
    reads them."""
    from exporter.aws.doctor import AwsDoctor

    snapshot = snapshot or world.snapshot()
    doctor = AwsDoctor(settings())
    try:
        round_ = await doctor.refresh(snapshot, plan=world.plan(snapshot), probes=probes, now=1000.0, full=True)
    finally:
        doctor.close()
    return round_.results


def central(
    world: World, aws: Sequence[CheckResult], agents: Sequence[CheckResult] = (), snapshot: ClusterSnapshot | None = None
) -> list[CheckResult]:
    """The cluster role's round: its object checks and the AWS checks, joined with the node agents' results as
    it reads them from their /api/v1/results."""
    snapshot = snapshot or world.snapshot()
    own = [*cluster_results(snapshot, ControllerConfig(), ControllerLocation()), *aws]
    imported = results_from_json(results_json(list(agents)))
    return list(order(link_round(own, imported)))


def one(results: Sequence[CheckResult], check: Check, *, pod: str | None = None, ip: str | None = None) -> CheckResult:
    found = [
        r
        for r in results
        if r.check is check
        and r.status is not Status.OK
        and (pod is None or (r.target is not None and r.target.pod == pod))
        and (ip is None or (r.target is not None and r.target.ip == ip))
    ]
    assert len(found) == 1, [f"{r.check} {r.reason} {r.target}" for r in found]
    return found[0]


def cause_of(results: Sequence[CheckResult], effect: CheckResult) -> CheckResult:
    assert effect.caused_by is not None, f"{effect.check} {effect.reason} names no cause"
    [cause] = [r for r in results if r.key == effect.caused_by]
    return cause


def probe_target(world: World, pod: str, snapshot: ClusterSnapshot | None = None) -> ProbeTarget:
    snapshot = snapshot or world.snapshot()
    node = snapshot.pods[f"shop/{pod}"].node_name
    assert node is not None
    return next(t for t in node_targets(world.plan(snapshot), snapshot, node).targets if t.pod == pod)


async def probed(target: ProbeTarget, ip: str, port: int, *, timeout: float | None = None, times: int = 3) -> TargetStatus:
    """The target's status after ``times`` real probes, sent to a loopback app standing in for the pod."""
    request = replace(target.request, ip=ip, port=port, timeout=timeout or target.request.timeout)
    prober = probe_tcp if request.protocol == "TCP" else probe_http
    health = PredictedHealth()
    outcome: ProbeOutcome | None = None
    for _ in range(times):
        outcome = await prober(request)
        health = health.after(outcome.success, target.thresholds)
    assert outcome is not None
    return TargetStatus(target, outcome, 990.0, health, None if outcome.success else outcome)


# -- the network path --------------------------------------------------------------------------------------


async def test_a_security_group_and_a_nacl_each_explain_their_targets_timeout(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: one ALB, web-1's interface in a security group without the LB's rule, web-2's subnet
    behind a NACL that denies the health-check port; api's targets are fine. Both Target.Timeout name their
    cause, and each remedy is the fix of that cause."""
    narrow = world.security_group("web-1-only")
    world.ec2.modify_network_interface_attribute(NetworkInterfaceId=world.pod_enis["web-1"], Groups=[narrow])
    acl = world.ec2.create_network_acl(VpcId=world.vpc)["NetworkAcl"]["NetworkAclId"]
    for egress in (False, True):
        world.nacl_entry(acl, 100, egress=egress, allow=True, cidr="0.0.0.0/0", ports=None, protocol="-1")
    world.nacl_entry(acl, 50, egress=False, allow=False, cidr="10.0.0.0/23", ports=(8080, 8080))
    association = next(
        a["NetworkAclAssociationId"]
        for found in world.ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [world.vpc]}])["NetworkAcls"]
        for a in found["Associations"]
        if a["SubnetId"] == world.node_subnets[1]
    )
    world.ec2.replace_network_acl_association(AssociationId=association, NetworkAclId=acl)
    patch_target_health(monkeypatch, {POD_IPS["web-1"]: TIMEOUT, POD_IPS["web-2"]: TIMEOUT})
    results = central(world, await aws_round(world))
    first, second = one(results, Check.ELB_TARGET_HEALTH, pod="web-1"), one(results, Check.ELB_TARGET_HEALTH, pod="web-2")
    sg, nacl = cause_of(results, first), cause_of(results, second)
    assert (sg.check, sg.reason) == (Check.SECURITY_GROUPS, Reason.HEALTH_CHECK_PORT_NOT_ALLOWED)
    assert sg.target is not None and sg.target.pod == "web-1" and narrow in sg.message
    assert (nacl.check, nacl.reason) == (Check.NETWORK, Reason.NACL_DENIES_HEALTH_CHECK)
    assert nacl.target is not None and nacl.target.pod == "web-2" and acl in nacl.message
    assert first.remedy == f"caused by security_groups HealthCheckPortNotAllowed on Ingress shop/web (pod web-1): {sg.remedy}"
    assert second.remedy.endswith(nacl.remedy) and "caused by network NaclDeniesHealthCheck" in second.remedy
    assert sg.caused_by is None and nacl.caused_by is None  # roots


async def test_a_blackhole_route_explains_the_timeout(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    appliance = world.ec2.create_network_interface(SubnetId=world.node_subnets[0], PrivateIpAddress="10.0.10.200")
    appliance_id = appliance["NetworkInterface"]["NetworkInterfaceId"]
    world.ec2.create_route(RouteTableId=world.node_rt, DestinationCidrBlock="10.0.0.0/23", NetworkInterfaceId=appliance_id)
    monkeypatch.setattr(MotoRoute, "state", property(lambda self: "blackhole" if self.interface is not None else "active"))
    patch_target_health(monkeypatch, {POD_IPS["web-1"]: FAILED})
    results = central(world, await aws_round(world))
    cause = cause_of(results, one(results, Check.ELB_TARGET_HEALTH, pod="web-1"))
    assert (cause.check, cause.reason) == (Check.NETWORK, Reason.BLACKHOLE_ROUTE)


async def test_node_groups_that_block_each_other_explain_the_node_paths(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """node-b's group cannot reach api-1 on node-a: node-b's instance target fails at the LB, and node-b's
    own probe of its NodePort (kube-proxy forwards it to api-1) times out; both name the blocked group."""
    isolated = world.security_group("isolated-ng")
    world.allow(isolated, {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": world.cluster_sg}]})
    world.allow(world.cluster_sg, {"IpProtocol": "tcp", "FromPort": 30080, "ToPort": 30080, "IpRanges": [{"CidrIp": "10.0.0.0/23"}]})
    node_b = world.ec2.describe_instances(InstanceIds=[world.instances["node-b"]])["Reservations"][0]["Instances"][0]
    world.ec2.modify_network_interface_attribute(NetworkInterfaceId=node_b["NetworkInterfaces"][0]["NetworkInterfaceId"], Groups=[isolated])
    world.ec2.modify_instance_attribute(InstanceId=world.instances["node-b"], Groups=[isolated])
    world.revoke(world.cluster_sg, {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": world.cluster_sg}]})
    patch_target_health(monkeypatch, {world.instances["node-b"]: FAILED})
    snapshot = world.snapshot()
    node_path = next(t for t in node_targets(world.plan(snapshot), snapshot, "node-b").targets if t.node_path)
    ip = next_ip()  # nothing listens: what kube-proxy's forward into a dropping security group looks like
    silent = await probed(node_path, ip, unused_port(ip), times=3)
    assert silent.outcome is not None and not silent.outcome.success
    # A dropped SYN is a timeout; on loopback nothing answers with a refusal instead: say what the LB sees.
    dropped = replace(silent, outcome=replace(silent.outcome, reason=Reason.TIMEOUT), last_failure=None)
    results = central(world, await aws_round(world, probes=[dropped]), [health_probe.verdict(dropped, 1000.0)])
    blocked = [r for r in results if r.reason is Reason.NODE_GROUP_TRAFFIC_BLOCKED]
    assert len(blocked) == 1
    elb = one(results, Check.ELB_TARGET_HEALTH, ip=NODE_IPS["node-b"])
    probe = one(results, Check.HEALTH_PROBE)
    assert probe.target is not None and probe.target.pod is None and probe.node == "node-b"
    assert elb.caused_by == probe.key  # the LB's verdict on node-b follows from node-b's node path …
    assert probe.caused_by == blocked[0].key  # … which the blocked node group explains


# -- the application, seen by the node agents' probes ------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "timeout", "verdict", "probe_reason"),
    [
        (respond(404), None, MISMATCH, Reason.RESPONSE_CODE_MISMATCH),
        (respond(200, delay=1.0), 0.3, TIMEOUT, Reason.TIMEOUT),
    ],
    ids=["response-code", "timeout"],
)
async def test_the_apps_failure_explains_the_lbs_verdict_on_that_pod(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    handler: Handler,
    timeout: float | None,
    verdict: tuple[str, str, str],
    probe_reason: Reason,
) -> None:
    ip = next_ip()
    async with Server(ip, handler) as app:
        status = await probed(probe_target(world, "web-1"), ip, app.port, timeout=timeout)
    patch_target_health(monkeypatch, {POD_IPS["web-1"]: verdict})
    results = central(world, await aws_round(world, probes=[status]), [health_probe.verdict(status, 1000.0)])
    elb = one(results, Check.ELB_TARGET_HEALTH, pod="web-1")
    cause = cause_of(results, elb)
    assert (cause.check, cause.reason) == (Check.HEALTH_PROBE, probe_reason)
    assert cause.target is not None and cause.target.pod == "web-1" and cause.node == "node-a"
    assert "application is at fault" in elb.message
    assert elb.remedy.startswith(f"caused by health_probe {probe_reason.value} on Ingress shop/web (pod web-1, node node-a)")


async def test_a_probe_failing_on_another_target_group_explains_nothing(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The LB's verdict is joined with the probe of the same target group only: a failing probe of web-1 for
    another owner does not explain the web Ingress's Target.Timeout."""
    ip = next_ip()
    async with Server(ip, respond(200, delay=1.0)) as app:
        status = await probed(probe_target(world, "web-1"), ip, app.port, timeout=0.3)
    other = replace(status, target=replace(status.target, owner=replace(status.target.owner, name="web-internal")))
    patch_target_health(monkeypatch, {POD_IPS["web-1"]: TIMEOUT})
    results = central(world, await aws_round(world, probes=[other]), [health_probe.verdict(other, 1000.0)])
    assert one(results, Check.ELB_TARGET_HEALTH, pod="web-1").caused_by is None


# -- Kubernetes objects ------------------------------------------------------------------------------------


async def test_external_traffic_policy_local_explains_nodes_without_pods(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    api = replace(API_SERVICE, external_traffic_policy="Local", health_check_node_port=32000)
    slice_ = EndpointSlice(
        ObjectMeta("shop", "api-1x", labels={"kubernetes.io/service-name": "api"}),
        "api",
        "IPv4",
        (Endpoint((POD_IPS["api-1"],), ready=True, node_name="node-a", pod_name="api-1"),),
    )
    base = world.snapshot()
    snapshot = ClusterSnapshot.of(
        services=[api if s.meta.key == "shop/api" else s for s in base.services.values()],
        ingresses=base.ingresses.values(),
        ingress_classes=base.ingress_classes.values(),
        pods=base.pods.values(),
        nodes=base.nodes.values(),
        endpoint_slices=[slice_],
        target_group_bindings=base.target_group_bindings.values(),
    )
    patch_target_health(monkeypatch, {world.instances["node-b"]: FAILED})
    results = central(world, await aws_round(world, snapshot), snapshot=snapshot)
    cause = cause_of(results, one(results, Check.ELB_TARGET_HEALTH, ip=NODE_IPS["node-b"]))
    assert (cause.check, cause.reason) == (Check.TRAFFIC_POLICY, Reason.EXTERNAL_TRAFFIC_POLICY_LOCAL)
    assert "node-b" in cause.message


async def test_a_controller_denied_by_iam_explains_a_target_group_without_targets(world: World) -> None:
    world.elbv2.deregister_targets(
        TargetGroupArn=world.web_tg, Targets=[{"Id": POD_IPS[p], "Port": 8080} for p in ("web-1", "web-2")]
    )
    base = world.snapshot()
    labels = {"app.kubernetes.io/name": "aws-load-balancer-controller"}
    controller = Deployment(ObjectMeta("kube-system", "aws-load-balancer-controller", labels=labels), 2, 2, 2, labels)
    denied = (
        '{"level":"error","msg":"Reconciler error","error":"operation error Elastic Load Balancing v2: RegisterTargets, '
        "https response error StatusCode: 403, api error AccessDenied: User: arn:aws:sts::1:assumed-role/r/s is not "
        'authorized to perform: elasticloadbalancing:RegisterTargets"}'
    )
    snapshot = replace(
        base, deployments=ClusterSnapshot.of(deployments=[controller]).deployments, controller_logs={"kube-system/c-1": denied}
    )
    results = central(world, await aws_round(world, snapshot), snapshot=snapshot)
    [empty] = [r for r in results if r.reason is Reason.NO_REGISTERED_TARGETS]
    cause = cause_of(results, empty)
    assert (cause.check, cause.reason, cause.object.kind) == (Check.CONTROLLER, Reason.CONTROLLER_ACCESS_DENIED, "Deployment")
    assert "elasticloadbalancing:RegisterTargets" in cause.message and "caused by controller" in empty.remedy


# -- kube-proxy --------------------------------------------------------------------------------------------


async def test_stale_kube_proxy_rules_explain_the_lbs_verdict_on_that_instance(
    world: World, monkeypatch: pytest.MonkeyPatch, netns: Netns
) -> None:
    """node-a's kube-proxy has no NodePort rule for shop/api (a real iptables-save of rules loaded into a
    network namespace, read as ``lbdoctor diagnose --node node-a --iptables-save-file`` reads it): the NLB's
    instance target node-a fails, and its cause is that rule."""
    api = Svc(
        "api",
        "172.20.0.20",
        (Ep(POD_IPS["api-1"], node="node-a", pod="api-1"),),
        port=80,
        port_name="tcp",
        node_port=30080,
        load_balancer=True,
        no_node_port=True,
    )
    netns.restore(iptables_restore([api], "node-a", aws=False), "nft")
    dump = netns.run(["iptables-nft-save"])
    base = world.snapshot()
    services, slices = api_objects([api])  # the API as kube-proxy should have programmed it
    snapshot = ClusterSnapshot.of(
        services=services, endpoint_slices=slices, nodes=base.nodes.values(), pods=base.pods.values()
    )
    proxy = [r for r in analyse(snapshot, "node-a", iptables_save=dump, now=1000.0) if r.status is Status.FAIL]
    assert [(r.reason, r.object.name) for r in proxy] == [(Reason.NODE_PORT_RULES_MISSING, "api")]
    patch_target_health(monkeypatch, {world.instances["node-a"]: TIMEOUT})
    aws = await aws_round(world)
    results = list(order(link_round([*aws, *proxy], [])))
    elb = one(results, Check.ELB_TARGET_HEALTH, ip=NODE_IPS["node-a"])
    assert cause_of(results, elb).key == proxy[0].key
    assert elb.remedy.startswith("caused by kube_proxy NodePortRulesMissing on Service shop/api (node node-a)")
