"""A small EKS cluster's AWS side, seeded in moto, and the Kubernetes objects that go with it.

    VPC 10.0.0.0/16
      LB subnets    lb-a 10.0.0.0/24 (us-east-1a), lb-b 10.0.1.0/24 (us-east-1b)   NACL lb-acl, routes lb-rt
      node subnets  nodes-a 10.0.10.0/24, nodes-b 10.0.11.0/24                       NACL node-acl, routes node-rt
    security groups  lb-sg (the ALB's), cluster-sg (tagged kubernetes.io/cluster/c1, on nodes and pods):
                     TCP 8080 from lb-sg, TCP 30080 from both LB subnets, everything from itself
    nodes            node-a (10.0.10.10), node-b (10.0.11.10)
    pods             web-1 10.0.10.21 on node-a, web-2 10.0.11.21 on node-b (ALB, ip targets, /healthz)
                     api-1 10.0.10.31 on node-a (NLB, instance targets, NodePort 30080)
    ALB k8s-shop-web (lb-sg)  -> TG k8s-shop-web  HTTP 8080 ip        (Ingress shop/web)
    NLB k8s-shop-api (no SG)  -> TG k8s-shop-api  TCP 30080 instance  (Service shop/api)

Everything is healthy and consistent with the annotations, so each test seeds exactly one fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3

from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import LbPlan, build_plan
from exporter.model.objects import (
    ContainerPort,
    ContainerStatus,
    Ingress,
    IngressBackend,
    IngressClass,
    Node,
    NodeAddress,
    ObjectMeta,
    Pod,
    Service,
    ServicePort,
    TargetGroupBinding,
)
from exporter.model.snapshot import ClusterSnapshot

CLUSTER = "c1"
REGION = "us-east-1"
CLUSTER_SG_TAG = f"kubernetes.io/cluster/{CLUSTER}"

POD_IPS = {"web-1": "10.0.10.21", "web-2": "10.0.11.21", "api-1": "10.0.10.31"}
NODE_IPS = {"node-a": "10.0.10.10", "node-b": "10.0.11.10"}


def clients(url: str) -> tuple[Any, Any]:
    return (
        boto3.client("ec2", region_name=REGION, endpoint_url=url),
        boto3.client("elbv2", region_name=REGION, endpoint_url=url),
    )


@dataclass
class World:
    url: str
    ec2: Any
    elbv2: Any
    vpc: str = ""
    lb_subnets: list[str] = field(default_factory=list)
    node_subnets: list[str] = field(default_factory=list)
    lb_acl: str = ""
    node_acl: str = ""
    lb_rt: str = ""
    node_rt: str = ""
    lb_sg: str = ""
    cluster_sg: str = ""
    instances: dict[str, str] = field(default_factory=dict)  # node name -> instance id
    pod_enis: dict[str, str] = field(default_factory=dict)  # pod name -> ENI id
    alb: str = ""
    nlb: str = ""
    web_tg: str = ""
    api_tg: str = ""
    extra_bindings: list[TargetGroupBinding] = field(default_factory=list)
    extra_pods: list[Pod] = field(default_factory=list)

    # -- Kubernetes side ---------------------------------------------------------------------------
    def snapshot(self) -> ClusterSnapshot:
        return ClusterSnapshot.of(
            services=[WEB_SERVICE, API_SERVICE],
            ingresses=[WEB_INGRESS],
            ingress_classes=[IngressClass(ObjectMeta("", "alb"), "ingress.k8s.aws/alb")],
            pods=[pod("web-1", "web", "node-a"), pod("web-2", "web", "node-b"), pod("api-1", "api", "node-a"), *self.extra_pods],
            nodes=[node(name, self.instances[name]) for name in NODE_IPS],
            target_group_bindings=[
                TargetGroupBinding(
                    ObjectMeta(
                        "shop",
                        "k8s-shop-web",
                        labels={"ingress.k8s.aws/stack-namespace": "shop", "ingress.k8s.aws/stack-name": "web"},
                    ),
                    self.web_tg,
                    "ip",
                    "web",
                    80,
                ),
                TargetGroupBinding(
                    ObjectMeta(
                        "shop",
                        "k8s-shop-api",
                        labels={"service.k8s.aws/stack-namespace": "shop", "service.k8s.aws/stack-name": "api"},
                    ),
                    self.api_tg,
                    "instance",
                    "api",
                    80,
                ),
                *self.extra_bindings,
            ],
        )

    def plan(self, snapshot: ClusterSnapshot | None = None) -> LbPlan:
        return build_plan(snapshot or self.snapshot(), ControllerConfig())

    # -- faults --------------------------------------------------------------------------------------
    def nacl_entry(self, acl: str, number: int, *, egress: bool, allow: bool, cidr: str, ports: tuple[int, int] | None,
                   protocol: str = "6") -> None:  # fmt: skip
        params: dict[str, Any] = {
            "NetworkAclId": acl,
            "RuleNumber": number,
            "Protocol": protocol,
            "RuleAction": "allow" if allow else "deny",
            "Egress": egress,
            "CidrBlock": cidr,
        }
        if ports is not None:
            params["PortRange"] = {"From": ports[0], "To": ports[1]}
        self.ec2.create_network_acl_entry(**params)

    def revoke(self, group: str, permission: dict[str, Any]) -> None:
        self.ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[permission])

    def allow(self, group: str, permission: dict[str, Any]) -> None:
        self.ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[permission])

    def security_group(self, name: str, tags: dict[str, str] | None = None) -> str:
        spec = [{"ResourceType": "security-group", "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()]}]
        return str(
            self.ec2.create_security_group(
                GroupName=name, Description=name, VpcId=self.vpc, TagSpecifications=spec if tags else []
            )["GroupId"]
        )


def from_sg(group: str, port: int, protocol: str = "tcp") -> dict[str, Any]:
    return {"IpProtocol": protocol, "FromPort": port, "ToPort": port, "UserIdGroupPairs": [{"GroupId": group}]}


def from_cidr(cidr: str, port: int, protocol: str = "tcp") -> dict[str, Any]:
    return {"IpProtocol": protocol, "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": cidr}]}


def tags(**pairs: str) -> list[dict[str, str]]:
    return [{"Key": k.replace("__", "/").replace("_", "."), "Value": v} for k, v in pairs.items()]


def build_world(url: str) -> World:
    ec2, elbv2 = clients(url)
    w = World(url, ec2, elbv2)
    w.vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    for cidr, zone, bucket in (
        ("10.0.0.0/24", "us-east-1a", w.lb_subnets),
        ("10.0.1.0/24", "us-east-1b", w.lb_subnets),
        ("10.0.10.0/24", "us-east-1a", w.node_subnets),
        ("10.0.11.0/24", "us-east-1b", w.node_subnets),
    ):
        bucket.append(ec2.create_subnet(VpcId=w.vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"])
    # Network ACLs: a custom one per tier, allowing everything (rule 100) until a test adds a fault.
    associations = {
        a["SubnetId"]: a["NetworkAclAssociationId"]
        for acl in ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [w.vpc]}])["NetworkAcls"]
        for a in acl["Associations"]
    }
    for attr, subnets in (("lb_acl", w.lb_subnets), ("node_acl", w.node_subnets)):
        acl = ec2.create_network_acl(VpcId=w.vpc)["NetworkAcl"]["NetworkAclId"]
        setattr(w, attr, acl)
        for egress in (False, True):
            w.nacl_entry(acl, 100, egress=egress, allow=True, cidr="0.0.0.0/0", ports=None, protocol="-1")
        for subnet in subnets:
            ec2.replace_network_acl_association(AssociationId=associations[subnet], NetworkAclId=acl)
    for attr, subnets in (("lb_rt", w.lb_subnets), ("node_rt", w.node_subnets)):
        table = ec2.create_route_table(VpcId=w.vpc)["RouteTable"]["RouteTableId"]
        setattr(w, attr, table)
        for subnet in subnets:
            ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    # Security groups.
    w.lb_sg = w.security_group("lb-sg")
    w.allow(w.lb_sg, from_cidr("0.0.0.0/0", 80))
    w.cluster_sg = w.security_group("cluster-sg", {CLUSTER_SG_TAG: "owned"})
    w.allow(w.cluster_sg, from_sg(w.lb_sg, 8080))
    w.allow(w.cluster_sg, {**from_cidr("10.0.0.0/24", 30080), "IpRanges": [{"CidrIp": "10.0.0.0/24"}, {"CidrIp": "10.0.1.0/24"}]})
    w.allow(w.cluster_sg, {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": w.cluster_sg}]})
    # Nodes and pods.
    image = "ami-12c6146b"  # one of moto's built-in images (listing them all costs a second)
    for (name, ip), subnet in zip(NODE_IPS.items(), w.node_subnets, strict=True):
        reservation = ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet, PrivateIpAddress=ip, SecurityGroupIds=[w.cluster_sg]
        )
        w.instances[name] = reservation["Instances"][0]["InstanceId"]
    for name, ip in POD_IPS.items():
        subnet = w.node_subnets[0] if ip.startswith("10.0.10.") else w.node_subnets[1]
        eni = ec2.create_network_interface(SubnetId=subnet, PrivateIpAddress=ip, Groups=[w.cluster_sg])
        w.pod_enis[name] = eni["NetworkInterface"]["NetworkInterfaceId"]
    # Load balancers and target groups, tagged as the controller tags them.
    w.alb = elbv2.create_load_balancer(
        Name="k8s-shop-web", Subnets=w.lb_subnets, SecurityGroups=[w.lb_sg], Type="application"
    )["LoadBalancers"][0]["LoadBalancerArn"]
    w.nlb = elbv2.create_load_balancer(Name="k8s-shop-api", Subnets=w.lb_subnets, Type="network")["LoadBalancers"][0][
        "LoadBalancerArn"
    ]
    w.web_tg = elbv2.create_target_group(
        Name="k8s-shop-web",
        Protocol="HTTP",
        Port=8080,
        VpcId=w.vpc,
        TargetType="ip",
        HealthCheckProtocol="HTTP",
        HealthCheckPort="traffic-port",
        HealthCheckPath="/healthz",
        HealthCheckIntervalSeconds=15,
        HealthCheckTimeoutSeconds=5,
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=2,
        Matcher={"HttpCode": "200"},
        Tags=[
            {"Key": "elbv2.k8s.aws/cluster", "Value": CLUSTER},
            {"Key": "ingress.k8s.aws/stack", "Value": "shop/web"},
            {"Key": "ingress.k8s.aws/resource", "Value": "shop/web-web:80"},
        ],
    )["TargetGroups"][0]["TargetGroupArn"]
    w.api_tg = elbv2.create_target_group(
        Name="k8s-shop-api",
        Protocol="TCP",
        Port=30080,
        VpcId=w.vpc,
        TargetType="instance",
        HealthCheckProtocol="TCP",
        HealthCheckPort="traffic-port",
        HealthCheckIntervalSeconds=10,
        HealthCheckTimeoutSeconds=10,
        HealthyThresholdCount=3,
        UnhealthyThresholdCount=3,
        Tags=[
            {"Key": "elbv2.k8s.aws/cluster", "Value": CLUSTER},
            {"Key": "service.k8s.aws/stack", "Value": "shop/api"},
            {"Key": "service.k8s.aws/resource", "Value": "shop/api:80"},
        ],
    )["TargetGroups"][0]["TargetGroupArn"]
    for lb, tg, port in ((w.alb, w.web_tg, 80), (w.nlb, w.api_tg, 80)):
        elbv2.create_listener(
            LoadBalancerArn=lb,
            Protocol="HTTP" if lb == w.alb else "TCP",
            Port=port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
        )
    elbv2.register_targets(
        TargetGroupArn=w.web_tg, Targets=[{"Id": POD_IPS["web-1"], "Port": 8080}, {"Id": POD_IPS["web-2"], "Port": 8080}]
    )
    elbv2.register_targets(TargetGroupArn=w.api_tg, Targets=[{"Id": i, "Port": 30080} for i in w.instances.values()])
    return w


# -- Kubernetes objects ------------------------------------------------------------------------------

WEB_SERVICE = Service(
    meta=ObjectMeta("shop", "web"),
    type="ClusterIP",
    selector={"app": "web"},
    ports=(ServicePort("http", 80, 8080),),
)
API_SERVICE = Service(
    meta=ObjectMeta(
        "shop",
        "api",
        annotations={
            "service.beta.kubernetes.io/aws-load-balancer-type": "external",
            "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "instance",
        },
    ),
    type="LoadBalancer",
    selector={"app": "api"},
    ports=(ServicePort("tcp", 80, 8080, node_port=30080),),
)
WEB_INGRESS = Ingress(
    meta=ObjectMeta(
        "shop",
        "web",
        annotations={
            "alb.ingress.kubernetes.io/target-type": "ip",
            "alb.ingress.kubernetes.io/healthcheck-path": "/healthz",
        },
    ),
    class_name="alb",
    backends=(IngressBackend("web", 80, None, "web.example.com", "/"),),
)


def pod(name: str, app: str, node_name: str, ip: str | None = None) -> Pod:
    return Pod(
        meta=ObjectMeta("shop", name, labels={"app": app}),
        node_name=node_name,
        phase="Running",
        pod_ip=ip or POD_IPS[name],
        ports=(ContainerPort("http", 8080),),
        container_statuses=(ContainerStatus("app", True),),
    )


def node(name: str, instance_id: str) -> Node:
    zone = "us-east-1a" if name == "node-a" else "us-east-1b"
    return Node(
        meta=ObjectMeta("", name, labels={"eks.amazonaws.com/nodegroup": "general"}),
        addresses=(NodeAddress("InternalIP", NODE_IPS[name]),),
        provider_id=f"aws:///{zone}/{instance_id}",
    )
