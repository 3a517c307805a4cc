"""The demo's AWS side: moto in server mode on loopback, holding what the AWS Load Balancer Controller would
have made for the demo's services, and a load balancer whose verdicts follow the demo's own apps.

Needs the ``demo`` extra (``moto[server]``); without it the demo runs without AWS and says how to add it.

What it holds (the VPC is the demo's 127.N/16, so pod IPs are VPC addresses):

- subnets: three node subnets (127.N.0.0/19, .32.0/19, .64.0/19, one per zone), three public ALB subnets
  (127.N.128-130.0/24), three public NLB subnets (127.N.132-134.0/24) and two internal ones
  (127.N.140-141.0/24), with network ACLs and route tables; three EC2 instances behind the demo's
  nodes; an ENI on the first node holding every pod IP
  (the VPC CNI's secondary addresses);
- security groups: the cluster's (tagged ``kubernetes.io/cluster/<cluster>``, on nodes and pods), letting
  in the controller's shared backend group (ALBs) and the load balancer subnets (NLBs) on the ports the
  targets use; each ALB's frontend group;
- per load-balanced object, what the controller makes from its annotations (lbdoctor's own reading of
  them, so there is no drift): a load balancer, a target group tagged for the cluster, a listener, the
  registered targets, and the TargetGroupBinding in the fake API server; plus a hand-made target group
  ``partner-feed`` with a binding of its own, which a "console user" deletes once lbdoctor has seen it.

Seeded faults: ALB ``reviews`` uses its own frontend security group without backend rules, so the
cluster's group has no rule for it; NLB ``ledger`` sits in the internal subnets, whose traffic the node
subnets' network ACL denies on the health-check port; NLB ``notifications`` still drains the target of a
pod its last rollout killed (the rollout window, seen).

The load balancer: every target group's health check runs for real against the demo's apps (HTTP GET, TCP
connect or a gRPC call, the target group's path, codes, timeout and thresholds), except where a seeded fault drops
the packets (a timeout), and kube-proxy's answers for instance targets are derived from the endpoints.
Verdicts and reasons are AWS's (``Target.Timeout``, ``Target.ResponseCodeMismatch``,
``Target.FailedHealthChecks``) and reach moto's DescribeTargetHealth through ``MotoTargetHealth``; every
minute each target group's ``UnHealthyHostCount`` goes to moto's CloudWatch; the controller's part, the
readiness-gate condition of the ``reviews`` pods, follows the verdict in the fake API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import structlog

from exporter.demo import cluster
from exporter.demo.elb import MotoTargetHealth, UnhealthyCounts, Verdict, publish
from exporter.fakeapi import ClusterState
from exporter.kube import convert
from exporter.lb.healthcheck import ALB, INSTANCE, TCP, ControllerConfig, HealthCheckSpec
from exporter.lb.plan import plan_all
from exporter.model.probe import ProbeRequest
from exporter.model.results import Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from exporter.probes.grpc import probe_grpc

log = structlog.get_logger("lbdoctor.demo.aws")

REGION = "eu-west-1"
CLUSTER_NAME = "lbdoctor-demo"
PARTNER = "partner-feed"  # the hand-made target group a console user deletes
IMAGE = "ami-03cf127a"  # one of moto's built-in eu-west-1 images
ELB_USER_AGENT = "ELB-HealthChecker/2.0"


def missing() -> str | None:
    """Why the demo cannot run its AWS side, or None when it can."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return "moto[server] is not installed (scripts/demo installs it; or pip install 'lbdoctor[demo]')"
    return None


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Target:
    id: str  # pod IP or instance id
    port: int
    node: str | None = None  # instance targets: the node it is
    verdict: Verdict = field(
        default_factory=lambda: Verdict("initial", "Elb.RegistrationInProgress", "Target registration is in progress")
    )
    ok_streak: int = 0
    fail_streak: int = 0


@dataclass
class _Group:
    """One target group the demo's controller made, and what its load balancer checks."""

    name: str
    arn: str
    lb: str  # alb | nlb
    lb_arn: str
    spec: HealthCheckSpec
    scenario: cluster.Scenario | None
    targets: list[_Target]
    hc_port: int | None  # a fixed health-check port (healthCheckNodePort, a number); None: each target's port
    blocked: bool = False  # a seeded fault drops the health checks on the way
    deleted: bool = False


class DemoAws:
    """Start with ``await start()``; ``environment`` then points boto3 at it; ``await stop()`` at the end."""

    def __init__(self, net: str, state: ClusterState, started: float) -> None:
        self.net = net
        self.state = state
        self.started = started
        self.url = ""
        self.instances: dict[str, str] = {}  # node name -> instance id
        self.groups: list[_Group] = []
        self.health = MotoTargetHealth()
        self.counts = UnhealthyCounts()
        self.partner_deleted = asyncio.Event()
        self._server: Any = None
        self._clients: dict[str, Any] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._vpc: dict[str, Any] = {}

    # -- the environment the cluster role reads AWS through -------------------------------------------
    @property
    def environment(self) -> dict[str, str]:
        """What any AWS SDK needs to talk to the demo's AWS, and nothing real."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    # -- life cycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._start_server)
        self.health.install()
        await asyncio.to_thread(self._seed)
        now = time.time()
        for group in self.groups:
            for target in group.targets:
                self._set(group, target, target.verdict, now)
            self._tasks.append(asyncio.create_task(self._check_forever(group), name=f"demo elb {group.name}"))
        self._tasks.append(asyncio.create_task(self._publish_forever(), name="demo elb metrics"))

    def watch_partner(self, seen: Callable[[], Awaitable[bool]]) -> None:
        """Once ``seen()`` says lbdoctor has read the partner's target group, a console user deletes it."""
        self._tasks.append(asyncio.create_task(self._delete_partner_when(seen), name="demo console user"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.health.uninstall()
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)

    def _start_server(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def _client(self, service: str) -> Any:
        import boto3

        if service not in self._clients:
            self._clients[service] = boto3.session.Session().client(
                service,
                region_name=REGION,
                endpoint_url=self.url,
                aws_access_key_id="demo",
                aws_secret_access_key="demo",
            )
        return self._clients[service]

    # -- the VPC and what the controller made ---------------------------------------------------------
    def _seed(self) -> None:
        ec2, net = self._client("ec2"), self.net
        vpc = ec2.create_vpc(CidrBlock=f"{net}.0.0/16")["Vpc"]["VpcId"]
        zones = ("a", "b", "c")

        def subnet(cidr: str, zone: str, name: str) -> str:
            tags = [{"ResourceType": "subnet", "Tags": [{"Key": "Name", "Value": name}]}]
            return str(
                ec2.create_subnet(
                    VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{REGION}{zone}", TagSpecifications=tags
                )["Subnet"]["SubnetId"]
            )

        nodes = [subnet(f"{net}.{32 * i}.0/19", z, f"nodes-{z}") for i, z in enumerate(zones)]
        public = [subnet(f"{net}.{128 + i}.0/24", z, f"alb-public-{z}") for i, z in enumerate(zones)]
        nlb_public = [subnet(f"{net}.{132 + i}.0/24", z, f"nlb-public-{z}") for i, z in enumerate(zones)]
        internal = [subnet(f"{net}.{140 + i}.0/24", z, f"ledger-internal-{z}") for i, z in enumerate(zones[:2])]
        # Network ACLs: one for the load balancer subnets, one for the node subnets, both allowing
        # everything (rule 100) — but the node subnets' ACL denies the internal subnets the health-check port.
        associations = {
            a["SubnetId"]: a["NetworkAclAssociationId"]
            for acl in ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["NetworkAcls"]
            for a in acl["Associations"]
        }
        for subnets, name in ((public + nlb_public + internal, "lb"), (nodes, "nodes")):
            acl = ec2.create_network_acl(
                VpcId=vpc, TagSpecifications=[{"ResourceType": "network-acl", "Tags": [{"Key": "Name", "Value": name}]}]
            )["NetworkAcl"]["NetworkAclId"]
            for egress in (False, True):
                ec2.create_network_acl_entry(
                    NetworkAclId=acl,
                    RuleNumber=100,
                    Protocol="-1",
                    RuleAction="allow",
                    Egress=egress,
                    CidrBlock="0.0.0.0/0",
                )
            if name == "nodes":
                ec2.create_network_acl_entry(
                    NetworkAclId=acl,
                    RuleNumber=50,
                    Protocol="6",
                    RuleAction="deny",
                    Egress=False,
                    CidrBlock=f"{net}.140.0/23",
                    PortRange={"From": cluster.APP_PORT, "To": cluster.APP_PORT},
                )
            for sub in subnets:
                ec2.replace_network_acl_association(AssociationId=associations[sub], NetworkAclId=acl)
        for subnets in (public + nlb_public + internal, nodes):
            table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
            for sub in subnets:
                ec2.associate_route_table(RouteTableId=table, SubnetId=sub)

        def group(name: str, tags: dict[str, str] | None = None) -> str:
            spec = [
                {"ResourceType": "security-group", "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()]}
            ]
            return str(
                ec2.create_security_group(
                    GroupName=name, Description=name, VpcId=vpc, TagSpecifications=spec if tags else []
                )["GroupId"]
            )

        backend = group(
            "k8s-traffic-lbdoctordemo", {"elbv2.k8s.aws/cluster": CLUSTER_NAME, "elbv2.k8s.aws/resource": "backend-sg"}
        )
        nodes_sg = group(f"eks-cluster-sg-{CLUSTER_NAME}", {f"kubernetes.io/cluster/{CLUSTER_NAME}": "owned"})
        node_ports = {"FromPort": 30000, "ToPort": 32767}
        app = {"FromPort": cluster.APP_PORT, "ToPort": cluster.APP_PORT}
        # The NLBs have no security group: the controller lets their subnets in (ALBs come in through the
        # shared backend group, from subnets of their own).
        lb_cidrs = [{"CidrIp": f"{net}.132.0/22"}, {"CidrIp": f"{net}.140.0/23"}]
        ec2.authorize_security_group_ingress(
            GroupId=nodes_sg,
            IpPermissions=[
                {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": nodes_sg}]},
                {"IpProtocol": "tcp", **app, "UserIdGroupPairs": [{"GroupId": backend}]},
                {"IpProtocol": "tcp", **node_ports, "UserIdGroupPairs": [{"GroupId": backend}]},
                {"IpProtocol": "tcp", **app, "IpRanges": lb_cidrs},
                {"IpProtocol": "tcp", **node_ports, "IpRanges": lb_cidrs},
            ],
        )
        # Nodes, and the pods' addresses as secondary IPs of the first node's ENI.
        for index, (name, sub) in enumerate(zip((cluster.NODE, *cluster.OTHER_NODES), nodes, strict=True)):
            reservation = ec2.run_instances(
                ImageId=IMAGE,
                MinCount=1,
                MaxCount=1,
                SubnetId=sub,
                PrivateIpAddress=f"{net}.{32 * index}.10",
                SecurityGroupIds=[nodes_sg],
            )
            self.instances[name] = reservation["Instances"][0]["InstanceId"]
        pod_ips = [f"{net}.{spec.host}" for scenario in cluster.SCENARIOS for spec in scenario.pods]
        # The VPC CNI keeps a departed pod's address on the node's ENI for a while (its warm pool).
        pod_ips += [f"{net}.{s.departed}" for s in cluster.SCENARIOS if s.departed]
        addresses = [{"PrivateIpAddress": f"{net}.0.11", "Primary": True}] + [
            {"PrivateIpAddress": ip, "Primary": False} for ip in pod_ips
        ]
        eni = ec2.create_network_interface(
            SubnetId=nodes[0], PrivateIpAddresses=addresses, Groups=[nodes_sg], Description="aws-K8S-i-pods"
        )
        ec2.attach_network_interface(
            NetworkInterfaceId=eni["NetworkInterface"]["NetworkInterfaceId"],
            InstanceId=self.instances[cluster.NODE],
            DeviceIndex=1,
        )
        self._vpc = {
            "vpc": vpc,
            "public": public,
            "nlb_public": nlb_public,
            "internal": internal,
            "backend": backend,
            "group": group,
        }
        self._controller()
        self._partner()

    def _snapshot(self) -> ClusterSnapshot:
        kinds: dict[str, list[Any]] = {}
        readers = {
            "Service": convert.service,
            "Ingress": convert.ingress,
            "IngressClass": convert.ingress_class,
            "Pod": convert.pod,
            "EndpointSlice": convert.endpoint_slice,
        }
        for obj in cluster.objects(self.net, instances=self.instances):
            reader = readers.get(obj["kind"])
            if reader is not None:
                kinds.setdefault(obj["kind"], []).append(reader(obj))
        return ClusterSnapshot.of(
            services=kinds["Service"],
            ingresses=kinds["Ingress"],
            ingress_classes=kinds["IngressClass"],
            pods=kinds["Pod"],
            endpoint_slices=kinds["EndpointSlice"],
        )

    def _controller(self) -> None:
        """What the AWS Load Balancer Controller makes of each load-balanced object it can build."""
        elbv2, vpc = self._client("elbv2"), self._vpc
        snapshot = self._snapshot()
        scenarios = {s.name: s for s in cluster.SCENARIOS}
        for plan in plan_all(snapshot, ControllerConfig()):
            if any(problem.status is Status.FAIL for problem in plan.problems) or any(
                p.status is Status.FAIL for b in plan.backends if b.resolution for p in b.resolution.problems
            ):
                continue  # the controller cannot build its model (FailedBuildModel): no load balancer
            for backend in plan.backends:
                service, port, resolution = backend.service, backend.service_port, backend.resolution
                if service is None or port is None or resolution is None:
                    continue
                scenario = scenarios[service.meta.name]
                spec = resolution.spec
                name = cluster.binding_name(scenario)
                if backend.lb == ALB:
                    frontend = vpc["group"](
                        f"{name}-frontend" if scenario.aws_fault != "security_group" else "k8s-shop-reviews-frontend"
                    )
                    groups = [frontend] if scenario.aws_fault == "security_group" else [frontend, vpc["backend"]]
                    lb = elbv2.create_load_balancer(
                        Name=name[:32],
                        Subnets=vpc["public"],
                        SecurityGroups=groups,
                        Scheme="internet-facing",
                        Type="application",
                    )
                else:
                    internal = scenario.aws_fault == "nacl"
                    lb = elbv2.create_load_balancer(
                        Name=name[:32],
                        Subnets=vpc["internal"] if internal else vpc["nlb_public"],
                        Scheme="internal" if internal else "internet-facing",
                        Type="network",
                    )
                lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
                instance = spec.target_type == INSTANCE
                traffic_port = (
                    port.node_port
                    if instance
                    else int(port.target_port)
                    if isinstance(port.target_port, int)
                    else cluster.APP_PORT
                )
                assert traffic_port is not None
                hc_port: int | None = None
                if spec.node_health_check:
                    hc_port = service.health_check_node_port
                elif isinstance(spec.port, int):
                    hc_port = spec.port
                stack = "ingress.k8s.aws" if backend.lb == ALB else "service.k8s.aws"
                params: dict[str, Any] = {
                    "Name": name[:32],
                    "Protocol": "HTTP" if backend.lb == ALB else "TCP",
                    "Port": traffic_port,
                    "VpcId": vpc["vpc"],
                    "TargetType": spec.target_type,
                    "HealthCheckProtocol": spec.protocol,
                    "HealthCheckPort": str(hc_port) if hc_port is not None else "traffic-port",
                    "HealthCheckIntervalSeconds": spec.interval,
                    "HealthCheckTimeoutSeconds": spec.timeout,
                    "HealthyThresholdCount": spec.healthy_threshold,
                    "UnhealthyThresholdCount": spec.unhealthy_threshold,
                    "Tags": [
                        {"Key": "elbv2.k8s.aws/cluster", "Value": CLUSTER_NAME},
                        {"Key": f"{stack}/stack", "Value": f"{cluster.NAMESPACE}/{scenario.name}"},
                        {"Key": f"{stack}/resource", "Value": f"{cluster.NAMESPACE}/{scenario.name}:80"},
                    ],
                }
                if spec.protocol != TCP:
                    params["HealthCheckPath"] = spec.path or "/"
                    if spec.success_codes is not None:
                        params["Matcher"] = {"HttpCode": spec.success_codes.text}
                arn = elbv2.create_target_group(**params)["TargetGroups"][0]["TargetGroupArn"]
                elbv2.create_listener(
                    LoadBalancerArn=lb_arn,
                    Protocol="HTTP" if backend.lb == ALB else "TCP",
                    Port=80,
                    DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}],
                )
                if instance:
                    targets = [
                        _Target(self.instances[node], traffic_port, node)
                        for node in (cluster.NODE, *cluster.OTHER_NODES)
                    ]
                else:
                    # Ready endpoints, and those waiting only on the readiness gate (containers ready).
                    targets = [
                        _Target(f"{self.net}.{pod.host}", traffic_port)
                        for pod in scenario.pods
                        if not pod.crash_looping and _selected(scenario)
                    ]
                if targets:
                    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": t.id, "Port": t.port} for t in targets])
                if scenario.departed and not instance:
                    # A pod of the last rollout: deleted, killed after its 30 s grace, its target still draining.
                    gone = f"{self.net}.{scenario.departed}"
                    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": gone, "Port": traffic_port}])
                    self.health.set(
                        arn,
                        gone,
                        Verdict("draining", "Target.DeregistrationInProgress", "Target deregistration is in progress"),
                    )
                self.groups.append(
                    _Group(
                        name, arn, backend.lb, lb_arn, spec, scenario, targets, hc_port, scenario.aws_fault is not None
                    )
                )
                labels = (
                    {"ingress.k8s.aws/stack-namespace": cluster.NAMESPACE, "ingress.k8s.aws/stack-name": scenario.name}
                    if backend.lb == ALB
                    else {
                        "service.k8s.aws/stack-namespace": cluster.NAMESPACE,
                        "service.k8s.aws/stack-name": scenario.name,
                    }
                )
                self.state.apply(_binding(name, arn, spec.target_type, scenario.name, labels))

    def _partner(self) -> None:
        """A partner's hand-made ALB and target group in front of storefront, bound by a TargetGroupBinding."""
        elbv2, vpc = self._client("elbv2"), self._vpc
        storefront = next(s for s in cluster.SCENARIOS if s.name == "storefront")
        lb_arn = elbv2.create_load_balancer(
            Name="partner-gateway",
            Subnets=vpc["public"],
            SecurityGroups=[vpc["group"]("partner-gateway"), vpc["backend"]],
            Type="application",
        )["LoadBalancers"][0]["LoadBalancerArn"]
        arn = elbv2.create_target_group(
            Name=PARTNER,
            Protocol="HTTP",
            Port=cluster.APP_PORT,
            VpcId=vpc["vpc"],
            TargetType="ip",
            HealthCheckPath="/healthz",
            HealthCheckIntervalSeconds=10,
            HealthCheckTimeoutSeconds=5,
            HealthyThresholdCount=2,
            UnhealthyThresholdCount=2,
        )["TargetGroups"][0]["TargetGroupArn"]
        elbv2.create_listener(
            LoadBalancerArn=lb_arn,
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}],
        )
        targets = [_Target(f"{self.net}.{pod.host}", cluster.APP_PORT) for pod in storefront.pods]
        elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": t.id, "Port": t.port} for t in targets])
        spec = HealthCheckSpec(ALB, "ip", "HTTP", "traffic-port", "/healthz", None, 10, 5, 2, 2)
        self.groups.append(_Group(PARTNER, arn, ALB, lb_arn, spec, storefront, targets, None))
        self.state.apply(_binding(PARTNER, arn, "ip", storefront.name, {}))

    # -- the load balancer --------------------------------------------------------------------------------
    def _set(self, group: _Group, target: _Target, verdict: Verdict, now: float) -> None:
        target.verdict = verdict
        self.health.set(group.arn, target.id, verdict)
        self.counts.record(group.arn, target.id, verdict.state, now)

    async def _check_forever(self, group: _Group) -> None:
        while not group.deleted:
            started = time.monotonic()
            outcomes = await asyncio.gather(*(self._check(group, target) for target in group.targets))
            now = time.time()
            for target, failure in zip(group.targets, outcomes, strict=True):
                verdict = self._judge(group, target, failure)
                if verdict != target.verdict:
                    self._set(group, target, verdict, now)
                    self._gate(group, verdict, now)
            await asyncio.sleep(max(0.0, group.spec.interval - (time.monotonic() - started)))

    async def _check(self, group: _Group, target: _Target) -> tuple[str, int | None] | None:
        """None when the check passes, else (what went wrong, the HTTP code if any)."""
        spec = group.spec
        if group.blocked:
            await asyncio.sleep(spec.timeout)  # the packets are dropped on the way: no answer
            return ("timeout", None)
        scenario = group.scenario
        if target.node is not None and scenario is not None:
            # Instance targets: kube-proxy on the node answers, forwarding to an endpoint.
            ready = [pod for pod in scenario.pods if not pod.crash_looping and _selected(scenario)]
            if spec.node_health_check:  # healthCheckNodePort: 200 with a local endpoint, else 503
                local = target.node == cluster.NODE and bool(ready)
                return None if local else ("code", 503)
            if not ready:
                return ("refused", None)  # no endpoint: kube-proxy rejects the connection
            return await _probe(spec, f"{self.net}.{ready[0].host}", scenario.target_port)
        port = group.hc_port if group.hc_port is not None else target.port
        if spec.protocol_version == "GRPC":
            return await _probe_grpc(spec, target.id, port)
        return await _probe(spec, target.id, port)

    @staticmethod
    def _judge(group: _Group, target: _Target, failure: tuple[str, int | None] | None) -> Verdict:
        spec = group.spec
        if failure is None:
            target.ok_streak, target.fail_streak = target.ok_streak + 1, 0
            first = 1 if group.lb == ALB else spec.healthy_threshold  # an ALB counts a new target healthy at once
            wanted = first if target.verdict.state == "initial" else spec.healthy_threshold
            return (
                Verdict("healthy")
                if target.ok_streak >= wanted or target.verdict.state == "healthy"
                else target.verdict
            )
        target.ok_streak, target.fail_streak = 0, target.fail_streak + 1
        if target.fail_streak < spec.unhealthy_threshold and target.verdict.state != "unhealthy":
            return (
                target.verdict
                if target.verdict.state != "initial"
                else replace(
                    target.verdict, reason="Elb.InitialHealthChecking", description="Initial health checks in progress"
                )
            )
        kind, code = failure
        if group.lb != ALB:
            return Verdict("unhealthy", "Target.FailedHealthChecks", "Health checks failed")
        if kind == "timeout":
            return Verdict("unhealthy", "Target.Timeout", "Request timed out")
        if kind == "code":
            return Verdict(
                "unhealthy", "Target.ResponseCodeMismatch", f"Health checks failed with these codes: [{code}]"
            )
        return Verdict("unhealthy", "Target.FailedHealthChecks", "Health checks failed")

    def _gate(self, group: _Group, verdict: Verdict, now: float) -> None:
        """The controller's part: the readiness-gate condition of the pods behind the target group."""
        scenario = group.scenario
        if scenario is None or not scenario.readiness_gate or group.name != cluster.binding_name(scenario):
            return
        healthy = verdict.state == "healthy"
        condition = cluster.GateCondition(
            "True" if healthy else "False",
            "" if healthy else verdict.reason or "",
            "" if healthy else verdict.description or "",
            _iso(now),
        )
        created = _iso(self.started)
        for pod in scenario.pods:
            self.state.apply(cluster.pod_object(scenario, pod, self.net, created, condition))
        self.state.apply(cluster.endpoint_slice(scenario, self.net, condition))

    async def _publish_forever(self) -> None:
        """Each minute's UnHealthyHostCount, once the minute is over, as ELB publishes it."""
        cloudwatch = self._client("cloudwatch")
        published = math.floor(time.time() / 60) * 60 - 60
        while True:
            ended = math.floor(time.time() / 60) * 60
            while published < ended:
                live = [g for g in self.groups if not g.deleted]
                counts = self.counts.minute(published, [g.arn for g in live])
                await asyncio.to_thread(publish, cloudwatch, published, counts, {g.arn: [g.lb_arn] for g in live})
                published += 60
            await asyncio.sleep(ended + 61 - time.time())

    async def _delete_partner_when(self, seen: Callable[[], Awaitable[bool]]) -> None:
        while not await seen():  # noqa: ASYNC110 (polls another process's HTTP API; no event to wait on)
            await asyncio.sleep(1.0)
        partner = next(g for g in self.groups if g.name == PARTNER)
        elbv2 = self._client("elbv2")

        def delete() -> None:
            for listener in elbv2.describe_listeners(LoadBalancerArn=partner.lb_arn)["Listeners"]:
                elbv2.delete_listener(ListenerArn=listener["ListenerArn"])
            elbv2.delete_target_group(TargetGroupArn=partner.arn)

        await asyncio.to_thread(delete)
        partner.deleted = True
        now = _iso(time.time())
        # The controller's next reconcile of the binding fails, and it says so in a Warning Event.
        self.state.apply(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{PARTNER}.1870b5e6a3c2d4f1", "namespace": cluster.NAMESPACE},
                "involvedObject": {
                    "kind": "TargetGroupBinding",
                    "namespace": cluster.NAMESPACE,
                    "name": PARTNER,
                    "apiVersion": "elbv2.k8s.aws/v1beta1",
                },
                "reason": "FailedReconcile",
                "message": "Failed reconcile due to TargetGroupNotFound: One or more target groups not found: "
                + partner.arn,
                "type": "Warning",
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": "targetGroupBinding"},
            }
        )
        self.partner_deleted.set()
        log.info("demo: a console user deleted the partner-feed target group", target_group=partner.arn)


def _selected(scenario: cluster.Scenario) -> bool:
    """Whether the Service's selector matches its pods (the alb-instance scenario's does not)."""
    labels = {"app.kubernetes.io/name": scenario.name} if scenario.selector is None else {"app": scenario.name}
    return scenario.selector is None or not scenario.selector.items() - labels.items()


def _binding(name: str, arn: str, target_type: str, service: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "elbv2.k8s.aws/v1beta1",
        "kind": "TargetGroupBinding",
        "metadata": {"name": name, "namespace": cluster.NAMESPACE, "labels": labels, "generation": 1},
        "spec": {"targetGroupARN": arn, "targetType": target_type, "serviceRef": {"name": service, "port": 80}},
        "status": {"observedGeneration": 1},
    }


async def _probe_grpc(spec: HealthCheckSpec, ip: str, port: int) -> tuple[str, int | None] | None:
    """A gRPC health check as the ALB sends it (HTTP/2, judged by grpc-status): lbdoctor's own prober."""
    request = ProbeRequest(
        spec.protocol,
        ip,
        port,
        float(spec.timeout),
        path=spec.path or "/AWS.ALB/healthcheck",
        success_ranges=spec.success_codes.ranges if spec.success_codes else ((12, 12),),
        protocol_version="GRPC",
    )
    outcome = await probe_grpc(request)
    if outcome.success:
        return None
    if outcome.grpc_status is not None:
        return ("code", outcome.grpc_status)
    return ("timeout", None) if outcome.reason is Reason.TIMEOUT else ("invalid", None)


async def _probe(spec: HealthCheckSpec, ip: str, port: int) -> tuple[str, int | None] | None:
    """One health check as the load balancer sends it: a new connection, GET path or a bare connect."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(spec.timeout):
            reader, writer = await asyncio.open_connection(ip, port)
            if spec.protocol == TCP:
                return None
            writer.write(
                f"GET {spec.path or '/'} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: {ELB_USER_AGENT}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            line = await reader.readline()
    except TimeoutError:
        return ("timeout", None)
    except OSError:
        return ("refused", None)
    finally:
        if writer is not None:
            writer.close()
    try:
        code = int(line.split()[1])
    except (IndexError, ValueError):
        return ("invalid", None)
    codes = spec.success_codes
    accepted = codes.matches(code) if codes is not None else 200 <= code <= 399
    return None if accepted else ("code", code)
