"""The target groups the front ends produce: plain data shared by the planners, the checks and the roles."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exporter.lb import annotations as ann
from exporter.lb.healthcheck import INSTANCE, IPV6, LBC, Problem, Resolution
from exporter.model.objects import Service, ServicePort
from exporter.model.results import Check, ObjectRef, Reason, Status
from exporter.model.snapshot import ClusterSnapshot


@dataclass(frozen=True, slots=True)
class Backend:
    """One target group: the object that owns it, the Service port behind it, and its health check."""

    lb: str  # alb | nlb | tgb
    owner: ObjectRef  # the Service (NLB), Ingress (ALB), route (Gateway API) or TargetGroupBinding
    service: Service | None  # None when the backend Service does not exist
    service_port: ServicePort | None
    resolution: Resolution | None  # None when there is nothing to resolve (missing Service)
    manager: str = LBC  # who reconciles it: lbc (the AWS Load Balancer Controller) or eks-auto-mode
    gateway: ObjectRef | None = None  # Gateway API: the Gateway whose load balancer the target group serves


@dataclass(frozen=True, slots=True)
class LbPlan:
    backends: tuple[Backend, ...]
    # Problems not tied to one backend (a missing backend Service, say), keyed by owner.
    problems: tuple[tuple[ObjectRef, Problem], ...] = ()


ROUTE_OWNER_KINDS = ("HTTPRoute", "GRPCRoute", "TCPRoute", "UDPRoute", "TLSRoute")


def config_check(owner: ObjectRef) -> Check | None:
    """The object check that reports an owner's configuration: its annotations, or its Gateway API objects."""
    if owner.kind == "Ingress":
        return Check.INGRESS_ANNOTATIONS
    if owner.kind == "Service":
        return Check.SERVICE_ANNOTATIONS
    if owner.kind in ROUTE_OWNER_KINDS:
        return Check.GATEWAY_CONFIG
    return None


@dataclass(frozen=True, slots=True)
class OwnerPlan:
    """The target groups one object (NLB Service, ALB Ingress, TargetGroupBinding) owns."""

    owner: ObjectRef
    backends: tuple[Backend, ...]
    problems: tuple[Problem, ...] = ()  # problems not tied to one backend (a missing backend Service)

    @property
    def manager(self) -> str:
        """Who reconciles the owner's target groups (lbc unless EKS Auto Mode does)."""
        return self.backends[0].manager if self.backends else LBC

    @property
    def services(self) -> frozenset[str]:
        return frozenset(b.service.meta.key for b in self.backends if b.service is not None)


def ipv6_node_problems(backends: Iterable[Backend], snapshot: ClusterSnapshot, check: Check) -> tuple[Problem, ...]:
    """Instance targets of an IPv6 target group: a node without an IPv6 address cannot be registered (the
    instance needs a primary IPv6 address)."""
    wanted = {
        backend.service.meta.key
        for backend in backends
        if backend.service is not None
        and backend.resolution is not None
        and backend.resolution.spec.target_type == INSTANCE
        and backend.resolution.spec.ip_address_type == IPV6
    }
    if not wanted:
        return ()
    lacking = sorted(
        node.meta.name
        for node in snapshot.nodes.values()
        if node.ready and not any(a.type == "InternalIP" and ":" in a.address for a in node.addresses)
    )
    if not lacking:
        return ()
    shown = ", ".join(lacking[:5]) + (f" and {len(lacking) - 5} more" if len(lacking) > 5 else "")
    return (
        Problem(
            check,
            Reason.NODE_WITHOUT_IPV6_ADDRESS,
            Status.WARN,
            f"the IPv6 target group of Service {', '.join(sorted(wanted))} uses instance targets, but node(s) {shown} "
            f"have no IPv6 InternalIP: an instance without a primary IPv6 address cannot be registered in an IPv6 "
            f"target group, so those nodes get no traffic",
            "give the nodes' instances a primary IPv6 address (launch template: PrimaryIpv6 on the network "
            "interface, in subnets with IPv6 CIDRs), or use ip targets",
        ),
    )


def bounded(owner: ObjectRef, backends: list[Backend], check: Check) -> tuple[tuple[Backend, ...], tuple[Problem, ...]]:
    """At most ``MAX_TARGET_GROUPS_PER_OWNER`` target groups of one object are probed; more is a finding."""
    limit = ann.MAX_TARGET_GROUPS_PER_OWNER
    if len(backends) <= limit:
        return tuple(backends), ()
    problem = Problem(
        check,
        Reason.TOO_MANY_TARGET_GROUPS,
        Status.WARN,
        f"{owner.kind} {owner.namespace}/{owner.name} makes {len(backends)} target groups; lbdoctor probes "
        f"the first {limit} (an ALB takes {limit} target groups and an NLB 50 listeners by default quota)",
        "split the load balancer, or check whether every port and backend is meant to be load balanced",
    )
    return tuple(backends[:limit]), (problem,)
