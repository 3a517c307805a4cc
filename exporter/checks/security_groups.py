"""Runbook step "node-group security groups": can the load balancer's packets get into each target?

For every ELB target, the security groups of the interface the packets land on (the pod's ENI for
ip targets — its branch ENI with security groups for pods — or the instance's primary ENI) must
allow the load balancer on the traffic port and the health-check port: by referencing the LB's
security group, or, for an NLB without one, by CIDRs that cover the LB's subnets. An ENI with more
than one security group needs exactly one tagged ``kubernetes.io/cluster/<name>``, or the controller
cannot add its rules (its most reported failure). Node groups must also let each other in on the
pods' ports, because kube-proxy forwards instance-target traffic across nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from exporter.aws.model import ApiProblem, Instance, LoadBalancer, ProblemKind, SecurityGroup, Topic
from exporter.aws.netrules import TCP, UDP, Access, ingress_allows, protocol_name
from exporter.checks.aws_context import (
    AwsContext,
    Landing,
    TargetView,
    Unresolved,
    family_cidrs,
    lb_flows,
    problem_result,
)
from exporter.checks.context import Scope
from exporter.lb.healthcheck import INSTANCE
from exporter.lb.targets import resolve_target_port
from exporter.model import subjects
from exporter.model.objects import Node
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, Status, Subject, TargetRef

CHECK = Check.SECURITY_GROUPS
CLUSTER_TAG_PREFIX = "kubernetes.io/cluster/"


def evaluate(scope: Scope) -> Iterable[CheckResult]:
    return () if scope.aws is None else evaluate_aws(scope.aws)


def evaluate_aws(context: AwsContext) -> Iterable[CheckResult]:
    for view in context.targets:
        group = view.group.group
        if group is not None and not group.supported:
            continue
        yield from target_results(context, view)
    yield from node_group_results(context)


def _result(
    view: TargetView,
    status: Status,
    reason: Reason | None,
    message: str,
    remedy: str = "",
    about: tuple[Subject, ...] = (),
) -> CheckResult:
    return CheckResult(
        CHECK,
        status,
        reason,
        view.owner,
        message,
        remedy,
        target=view.ref,
        about=(about or (view.elb_target,)) if subjects.linkable(status) else (),
    )


def _about(context: AwsContext, view: TargetView, landing: Landing) -> tuple[Subject, ...]:
    """A pod's own branch interface (security groups for pods) filters its node's packets too: then a finding
    on it is also about that target group's target on the pod, where lbdoctor's probe of it meets it."""
    interface = context.aws.interfaces_by_ip.get(landing.ip)
    pod = view.place.pod
    if pod is not None and interface is not None and interface.interface_type == "branch":
        return (view.elb_target, subjects.tg_pod(view.owner, pod.meta.name))
    return (view.elb_target,)


def target_results(context: AwsContext, view: TargetView) -> list[CheckResult]:
    what = f"{view.describe()} in {view.group.label}"
    lbs, problem = context.load_balancers(view.group)
    if problem is not None:
        return [problem_result(CHECK, view.owner, problem, f"the security groups of {what}", view.ref)]
    if not lbs:
        return []  # no load balancer sends to this target group; elb_target_health says Target.NotInUse
    landing = context.landing(view)
    if isinstance(landing, Unresolved):
        return [_result(view, landing.status, landing.reason, landing.message, landing.remedy)]
    if not isinstance(landing, Landing):
        return [problem_result(CHECK, view.owner, landing, f"the security groups of {what}", view.ref)]
    groups = [context.aws.security_groups.get(g) for g in landing.group_ids]
    readable = [g for g in groups if g is not None]
    if len(readable) < len(groups):
        unseen = ", ".join(g for g in landing.group_ids if g not in context.aws.security_groups)
        missing = context.aws.problem(Topic.SECURITY_GROUPS) or ApiProblem(
            "ec2:DescribeSecurityGroups", ProblemKind.NOT_FOUND, f"security group {unseen} was not found"
        )
        return [problem_result(CHECK, view.owner, missing, f"the security groups of {what}", view.ref)]
    findings = _tag_findings(view, landing, readable, context.aws.cluster)
    passes: list[str] = []
    for lb in lbs:
        subnets, subnet_problem = context.subnets_of(lb)
        if subnet_problem is not None:
            return [problem_result(CHECK, view.owner, subnet_problem, f"the security groups of {what}", view.ref)]
        cidrs = family_cidrs(subnets, landing.ip)
        findings.extend(_port_findings(view, landing, readable, lb, cidrs, passes))
    if findings:
        about = _about(context, view, landing)
        return [replace(finding, about=about) if subjects.linkable(finding.status) else finding for finding in findings]
    allowed = "; ".join(dict.fromkeys(passes)) or "no rule needed"
    return [_result(view, Status.OK, None, f"{what}: its security groups let the load balancer in ({allowed})")]


def _tag_findings(
    view: TargetView, landing: Landing, groups: Sequence[SecurityGroup], cluster: str
) -> list[CheckResult]:
    if len(groups) < 2:
        return []
    tag = CLUSTER_TAG_PREFIX + cluster
    tagged = [g.id for g in groups if tag in g.tags]
    ids = ", ".join(g.id for g in groups)
    if len(tagged) > 1:
        return [
            _result(
                view,
                Status.FAIL,
                Reason.MULTIPLE_CLUSTER_TAGGED_SECURITY_GROUPS,
                f"{landing.holder} of {view.describe()} has {len(tagged)} security groups tagged {tag} "
                f"({', '.join(tagged)}); the controller needs exactly one to add the load balancer's rules, so it "
                f"fails with 'expected exactly one securityGroup tagged with {tag}'",
                f"remove the {tag} tag from all but one of {', '.join(tagged)} (usually keep the EKS cluster security "
                f"group's), then let the controller reconcile",
            )
        ]
    if not tagged:
        return [
            _result(
                view,
                Status.WARN,
                Reason.NO_CLUSTER_TAGGED_SECURITY_GROUP,
                f"{landing.holder} of {view.describe()} has {len(groups)} security groups ({ids}) and none is "
                f"tagged {tag}; the controller cannot choose one for the load balancer's rules",
                f"tag exactly one of {ids} with {tag}",
            )
        ]
    return []


def _port_findings(
    view: TargetView,
    landing: Landing,
    groups: Sequence[SecurityGroup],
    lb: LoadBalancer,
    cidrs: Sequence[str],
    passes: list[str],
) -> list[CheckResult]:
    findings: list[CheckResult] = []
    source = _source(lb, cidrs)
    for kind, protocol, port in lb_flows(view, lb, by_security_group=True):
        verdict = ingress_allows(groups, protocol, port, source_groups=lb.security_groups, source_cidrs=cidrs)
        where = f"{protocol_name(protocol)} {port}"
        if verdict.access is Access.ALLOWED:
            passes.append(verdict.via)
            continue
        ids = ", ".join(g.id for g in groups)
        if verdict.access is Access.PREFIX_LIST:
            findings.append(
                _result(
                    view,
                    Status.UNKNOWN,
                    Reason.PREFIX_LIST_NOT_VERIFIED,
                    f"{view.describe()}: only prefix list {', '.join(verdict.prefix_lists)} in {ids} could allow "
                    f"{source} on {where} ({kind} port); lbdoctor does not read prefix-list entries",
                    f"check that {', '.join(verdict.prefix_lists)} contains {', '.join(cidrs) or 'the LB subnets'}",
                )
            )
            continue
        reason = Reason.HEALTH_CHECK_PORT_NOT_ALLOWED if kind == "health-check" else Reason.TRAFFIC_PORT_NOT_ALLOWED
        consequence = (
            "its health checks time out (Target.Timeout / Target.FailedHealthChecks)"
            if kind == "health-check"
            else "health checks may pass, but client traffic is dropped"
        )
        findings.append(
            _result(
                view,
                Status.FAIL,
                reason,
                f"{landing.holder} of {view.describe()} has security groups {ids}, and none allows {source} on "
                f"{where} (the {kind} port), so {consequence}",
                _remedy(lb, groups, protocol, port, cidrs),
            )
        )
    return findings


def _source(lb: LoadBalancer, cidrs: Sequence[str]) -> str:
    if lb.security_groups:
        return f"load balancer {lb.name}'s security group {', '.join(lb.security_groups)}"
    return f"load balancer {lb.name}'s subnets {', '.join(cidrs)}"


def _remedy(lb: LoadBalancer, groups: Sequence[SecurityGroup], protocol: int, port: int, cidrs: Sequence[str]) -> str:
    target = groups[0].id
    where = f"{protocol_name(protocol)} {port}"
    name = "udp" if protocol == UDP else "tcp"
    if lb.security_groups:
        source = lb.security_groups[0]
        return (
            f"allow {where} from {source} into {target} (aws ec2 authorize-security-group-ingress --group-id "
            f"{target} --protocol {name} --port {port} --source-group {source}); with custom frontend "
            f"security-groups annotations, set manage-backend-security-group-rules: 'true' so the controller adds it"
        )
    return (
        f"allow {where} from {', '.join(cidrs)} into {target} (an NLB without a security group sends from its subnets)"
    )


# -- node groups ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _NodeGroup:
    name: str
    group_ids: frozenset[str]
    nodes: tuple[tuple[Node, Instance], ...]


def _group_label(node: Node) -> str | None:
    labels = node.meta.labels
    return labels.get("eks.amazonaws.com/nodegroup") or labels.get("karpenter.sh/nodepool")


def _node_groups(context: AwsContext) -> list[_NodeGroup]:
    by_groups: dict[frozenset[str], list[tuple[Node, Instance]]] = {}
    for instance_id, node in sorted(context.index.nodes_by_instance.items()):
        instance = context.aws.instances.get(instance_id)
        if instance is not None and instance.group_ids:
            by_groups.setdefault(frozenset(instance.group_ids), []).append((node, instance))
    found = []
    for ids, members in sorted(by_groups.items(), key=lambda item: sorted(item[0])):
        labels = {_group_label(node) for node, _ in members}
        name = labels.pop() if len(labels) == 1 and None not in labels else "+".join(sorted(ids))
        found.append(_NodeGroup(str(name), ids, tuple(members)))
    return found


def node_group_results(context: AwsContext) -> Iterable[CheckResult]:
    """kube-proxy forwards an instance target's traffic (externalTrafficPolicy Cluster) from the node
    the LB picked to a pod on any node: each node group must let every node group in on the pods' ports."""
    groups = _node_groups(context)
    if not groups:
        return
    group_of_node = {node.meta.name: group for group in groups for node, _ in group.nodes}
    for backend in context.plan.backends:
        service = backend.service
        spec = backend.resolution.spec if backend.resolution else None
        if service is None or backend.service_port is None or spec is None:
            continue
        if spec.target_type != INSTANCE or service.external_traffic_policy != "Cluster":
            continue
        for pod in context.snapshot.selected_pods(service):
            port = resolve_target_port(backend.service_port.target_port, pod)
            destination = group_of_node.get(pod.node_name or "")
            if destination is None or isinstance(port, str) or not pod.pod_ip:
                continue
            yield from _cross_node(context, backend.owner, pod.meta.name, pod.pod_ip, port, destination, groups)


def _cross_node(
    context: AwsContext,
    owner: ObjectRef,
    pod: str,
    pod_ip: str,
    port: int,
    destination: _NodeGroup,
    groups: Sequence[_NodeGroup],
) -> Iterable[CheckResult]:
    interface = context.aws.interfaces_by_ip.get(pod_ip)
    # Security groups for pods: the pod's branch ENI has its own groups; otherwise the node's apply.
    landing_ids = interface.group_ids if interface is not None and interface.group_ids else tuple(destination.group_ids)
    landing = [context.aws.security_groups[g] for g in landing_ids if g in context.aws.security_groups]
    if len(landing) < len(landing_ids):
        return
    ref = TargetRef(pod=pod, ip=pod_ip, port=port)
    blocked = []
    for source in groups:
        if source is destination and len(source.nodes) < 2:
            continue  # a lone node reaches its own pods without crossing a security group
        source_ips = [instance.private_ip for _, instance in source.nodes if instance.private_ip]
        verdict = ingress_allows(landing, TCP, port, source_groups=source.group_ids, source_cidrs=source_ips)
        if verdict.access is Access.DENIED:
            blocked.append(source)
    if not blocked:
        yield CheckResult(
            CHECK,
            Status.OK,
            None,
            owner,
            f"pod {pod} (TCP {port}) is reachable from every node group, as kube-proxy needs for instance targets",
            target=ref,
        )
        return
    names = ", ".join(f"{g.name} ({', '.join(sorted(g.group_ids))})" for g in blocked)
    yield CheckResult(
        CHECK,
        Status.FAIL,
        Reason.NODE_GROUP_TRAFFIC_BLOCKED,
        owner,
        f"pod {pod} on node group {destination.name} does not let node group(s) {names} in on TCP {port}, so traffic "
        f"the load balancer sends to those nodes' NodePort cannot reach it through kube-proxy",
        f"allow TCP {port} (or all traffic) from {', '.join(sorted(blocked[0].group_ids))} into "
        f"{', '.join(landing_ids)}; EKS's cluster security group allows all traffic between nodes that use it",
        target=ref,
        # The node paths (NodePorts) of the blocked nodes lose what kube-proxy forwards to this pod.
        about=tuple(subjects.tg_node(owner, node.meta.name) for group in blocked for node, _ in group.nodes),
    )
