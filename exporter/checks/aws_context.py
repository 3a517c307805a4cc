"""What the AWS checks read: the cluster snapshot, what AWS said, the LB plan and the node agents' probes.

Also the small shared vocabulary of the three AWS checks: one view per target group and per target,
where an ELB target's packets land (its interface, subnet and security groups), and how an
``ApiProblem`` becomes an ``unknown`` result that names the IAM action.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from exporter.aws.mapping import ClusterIndex, GroupOwner, TargetPlace
from exporter.aws.model import (
    ApiProblem,
    AwsSnapshot,
    LoadBalancer,
    ProblemKind,
    Subnet,
    TargetGroup,
    TargetGroupHealth,
    TargetHealth,
    Topic,
)
from exporter.aws.netrules import TCP, UDP, contains
from exporter.lb.plan import LbPlan
from exporter.lb.targets import TargetStatus
from exporter.model import subjects
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, Status, Subject, TargetRef
from exporter.model.snapshot import ClusterSnapshot

_PROBLEM_REASONS = {
    ProblemKind.NO_CREDENTIALS: Reason.AWS_CREDENTIALS_MISSING,
    ProblemKind.ACCESS_DENIED: Reason.AWS_ACCESS_DENIED,
    ProblemKind.THROTTLED: Reason.AWS_THROTTLED,
    ProblemKind.NOT_FOUND: Reason.AWS_RESOURCE_NOT_FOUND,
    ProblemKind.UNREACHABLE: Reason.AWS_API_UNAVAILABLE,
    ProblemKind.ERROR: Reason.AWS_API_UNAVAILABLE,
}


def problem_result(
    check: Check, owner: ObjectRef, problem: ApiProblem, what: str, target: TargetRef | None = None
) -> CheckResult:
    """``unknown``: lbdoctor could not look, and the message says which IAM action failed and how."""
    return CheckResult(
        check,
        Status.UNKNOWN,
        _PROBLEM_REASONS[problem.kind],
        owner,
        f"cannot check {what}: {problem.message}",
        _PROBLEM_REMEDIES[problem.kind].format(action=problem.action),
        target=target,
    )


_PROBLEM_REMEDIES = {
    ProblemKind.NO_CREDENTIALS: "give the cluster role AWS credentials (IRSA or EKS Pod Identity) with "
    "docs/iam-policy.json",
    ProblemKind.ACCESS_DENIED: "allow {action} in the cluster role's IAM policy (docs/iam-policy.json)",
    ProblemKind.THROTTLED: "lower aws_elbv2_requests_per_second or raise the target-health intervals; see who else "
    "spends the account's Describe budget (CloudTrail)",
    ProblemKind.NOT_FOUND: "check aws_region and that the resource still exists",
    ProblemKind.UNREACHABLE: "check the cluster role's network path to the AWS API (VPC endpoints, proxies)",
    ProblemKind.ERROR: "see lbdoctor's log for the full error",
}


@dataclass(frozen=True, slots=True)
class GroupView:
    arn: str
    group: TargetGroup | None  # None when DescribeTargetGroups failed: only the binding's ARN is known
    owner: GroupOwner
    health: TargetGroupHealth | None
    problem: ApiProblem | None  # why ``health`` is missing

    @property
    def label(self) -> str:
        return f"target group {self.owner.name}"


@dataclass(frozen=True, slots=True)
class TargetView:
    group: GroupView
    target: TargetHealth
    place: TargetPlace

    @property
    def owner(self) -> ObjectRef:
        return self.group.owner.owner

    @property
    def ref(self) -> TargetRef:
        return self.place.ref(self.target.port)

    @property
    def traffic_port(self) -> int | None:
        if self.target.port is not None:
            return self.target.port
        return self.group.group.port if self.group.group is not None else None

    @property
    def health_check_port(self) -> int | None:
        for text in (self.target.health_check_port, self.group.group.health_check.port if self.group.group else None):
            if text and text.isdigit():
                return int(text)
        return self.traffic_port

    @property
    def traffic_protocols(self) -> tuple[int, ...]:
        protocol = (self.group.group.protocol or "") if self.group.group else ""
        if protocol.upper() == "UDP":
            return (UDP,)
        if protocol.upper() == "TCP_UDP":
            return (TCP, UDP)
        return (TCP,)

    def describe(self) -> str:
        return self.place.describe(self.target)

    @property
    def elb_target(self) -> Subject:
        """The ELB target as AWS names it: what the path findings and the LB's verdict on it share."""
        return subjects.elb_target(self.owner, self.target.id, self.target.port)

    @property
    def about(self) -> tuple[Subject, ...]:
        """What the load balancer's verdict on this target is about: the target, its pod (ip targets) or node
        (instance targets), that target group's target there (where lbdoctor's probe meets it), the Service,
        and the controller's work (registration)."""
        owner, place = self.owner, self.place
        namespace, service = self.group.owner.namespace, self.group.owner.service
        found = [self.elb_target, subjects.controller()]
        if place.pod is not None:
            name = place.pod.meta.name
            found += [subjects.pod(place.pod.meta.namespace, name), subjects.tg_pod(owner, name)]
            if service:
                found.append(subjects.service_pod(namespace, service, name))
        elif place.node is not None:
            name = place.node.meta.name
            found += [subjects.node(name), subjects.tg_node(owner, name)]
            if service:
                found.append(subjects.service_node(namespace, service, name))
        return tuple(found)


@dataclass(frozen=True, slots=True)
class Landing:
    """Where the load balancer's packets for a target arrive: an interface's address, subnet and groups."""

    ip: str
    subnet: Subnet
    group_ids: tuple[str, ...]
    holder: str  # eni-… or i-…


@dataclass(frozen=True, slots=True)
class Unresolved:
    """Why a target's landing could not be found; the check reports it with this status and reason."""

    status: Status
    reason: Reason
    message: str
    remedy: str = ""


@dataclass(frozen=True)
class AwsContext:
    snapshot: ClusterSnapshot
    aws: AwsSnapshot
    plan: LbPlan
    probes: tuple[TargetStatus, ...] = ()
    now: float = 0.0

    @cached_property
    def index(self) -> ClusterIndex:
        return ClusterIndex(self.snapshot, self.plan)

    @cached_property
    def groups(self) -> tuple[GroupView, ...]:
        aws = self.aws
        arns = sorted(set(aws.target_groups) | set(aws.bound_arns) | set(aws.health))
        views = []
        for arn in arns:
            group = aws.target_groups.get(arn)
            owner = self.index.owner_of(arn, group)
            views.append(GroupView(arn, group, owner, aws.health.get(arn), aws.health_problems.get(arn)))
        return tuple(views)

    @cached_property
    def targets(self) -> tuple[TargetView, ...]:
        views = []
        for group in self.groups:
            if group.health is None:
                continue
            for target in group.health.targets:
                views.append(TargetView(group, target, self.index.place(group.group, target, group.owner.namespace)))
        return tuple(views)

    def load_balancers(self, view: GroupView) -> tuple[list[LoadBalancer], ApiProblem | None]:
        if view.group is None:
            return [], self.aws.problem(Topic.TARGET_GROUPS)
        found = [self.aws.load_balancers[a] for a in view.group.load_balancer_arns if a in self.aws.load_balancers]
        if len(found) < len(view.group.load_balancer_arns):
            return found, self.aws.problem(Topic.LOAD_BALANCERS) or ApiProblem(
                "elasticloadbalancing:DescribeLoadBalancers",
                ProblemKind.NOT_FOUND,
                f"a load balancer of {view.label} was not found",
            )
        return found, None

    def landing(self, view: TargetView) -> Landing | Unresolved | ApiProblem:
        """The interface the LB sends the target's packets to, or why it is not known."""
        aws = self.aws
        group = view.group.group
        instance_target = view.target.id.startswith("i-") and (group is None or group.target_type == "instance")
        if instance_target:
            instance = aws.instances.get(view.target.id)
            if instance is None:
                return aws.problem(Topic.INSTANCES) or Unresolved(
                    Status.UNKNOWN,
                    Reason.TARGET_INTERFACE_NOT_FOUND,
                    f"{view.describe()}: instance {view.target.id} is not visible to lbdoctor (terminated?)",
                )
            subnet_id, ip, groups, holder = instance.subnet_id, instance.private_ip, instance.group_ids, instance.id
        else:
            interface = aws.interfaces_by_ip.get(view.place.ip or "")
            if interface is None:
                return aws.problem(Topic.NETWORK_INTERFACES) or self._no_interface(view)
            subnet_id, ip, groups, holder = interface.subnet_id, view.place.ip, interface.group_ids, interface.id
        subnet = aws.subnets.get(subnet_id or "")
        if subnet is None or ip is None:
            return aws.problem(Topic.SUBNETS) or Unresolved(
                Status.UNKNOWN,
                Reason.TARGET_INTERFACE_NOT_FOUND,
                f"{view.describe()}: subnet {subnet_id} of {holder} is not visible to lbdoctor",
            )
        return Landing(ip, subnet, groups, holder)

    def _no_interface(self, view: TargetView) -> Unresolved:
        ip = view.place.ip or view.target.id
        group = view.group.group
        vpc = self.aws.vpcs.get(group.vpc_id or "") if group is not None else None
        in_vpc = vpc is not None and any(contains(cidr, ip) for cidr in vpc.cidrs)
        if view.target.availability_zone == "all" or (vpc is not None and not in_vpc):
            return Unresolved(
                Status.UNKNOWN,
                Reason.TARGET_OUTSIDE_VPC,
                f"{view.describe()}: {ip} is outside the target group's VPC (a peered VPC or on-premises), so its "
                f"security groups and NACLs are not visible to lbdoctor",
                "check the path in the other network by hand: its security groups, NACLs and routes back to the "
                "load balancer's subnets",
            )
        return Unresolved(
            Status.WARN,
            Reason.TARGET_INTERFACE_NOT_FOUND,
            f"{view.describe()}: no network interface in the VPC holds {ip}; the load balancer cannot reach an "
            f"address no ENI owns (a pod that is gone, or a CNI whose pod IPs are not VPC addresses)",
            "with ip targets, pod IPs must be VPC addresses (the Amazon VPC CNI, or Cilium/Calico in ENI mode); "
            "otherwise use instance targets",
        )

    def subnets_of(self, lb: LoadBalancer) -> tuple[list[Subnet], ApiProblem | None]:
        found = [self.aws.subnets[s] for s in lb.subnet_ids if s in self.aws.subnets]
        if len(found) < len(lb.subnet_ids):
            return found, self.aws.problem(Topic.SUBNETS) or ApiProblem(
                "ec2:DescribeSubnets", ProblemKind.NOT_FOUND, f"a subnet of load balancer {lb.name} was not found"
            )
        return found, None


def family_cidrs(subnets: Sequence[Subnet], ip: str) -> list[str]:
    """The subnets' CIDRs of the address family of ``ip``."""
    v6 = ":" in ip
    cidrs: list[str] = []
    for subnet in subnets:
        cidrs.extend(c for c in subnet.cidrs if (":" in c) == v6)
    return cidrs


def lb_flows(view: TargetView, lb: LoadBalancer, *, by_security_group: bool) -> list[tuple[str, int, int]]:
    """(kind, protocol, port) of what the load balancer's own nodes send to the target.

    Health checks always come from the LB's nodes, and so does an ALB's traffic. An NLB may preserve
    the client's address (the default for instance targets), and then its traffic comes from clients
    lbdoctor does not know: NACLs see those addresses, so the NACL check leaves an NLB's traffic port
    out; a security group can still name the NLB's own group, so the security-group check keeps it when
    the NLB has one.
    """
    flows: list[tuple[str, int, int]] = []
    if view.health_check_port is not None:
        flows.append(("health-check", TCP, view.health_check_port))
    client_sourced = lb.type == "network" and not (by_security_group and lb.security_groups)
    if view.traffic_port is not None and not client_sourced:
        for protocol in view.traffic_protocols:
            if (protocol, view.traffic_port) not in {(p, n) for _, p, n in flows}:
                flows.append(("traffic", protocol, view.traffic_port))
    return flows


def merge_same(results: Iterable[CheckResult]) -> list[CheckResult]:
    """One result per object, target, reason and status (the result set's contract): findings that
    differ only in where they were seen (two LB subnets, two target groups of one Ingress) are told in
    one message, with each distinct remedy once."""
    merged: dict[tuple[object, ...], CheckResult] = {}
    for result in results:
        key = (result.key, result.reason, result.status)
        first = merged.get(key)
        if first is None:
            merged[key] = result
        elif result.message not in first.message:
            remedy = first.remedy if result.remedy in first.remedy else f"{first.remedy}; {result.remedy}"
            merged[key] = replace(first, message=f"{first.message}; also: {result.message}", remedy=remedy)
    return list(merged.values())
