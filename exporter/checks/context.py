"""What checks read: one ``Scope`` for every check, whichever role or unit of work evaluates it.

Every check is ``evaluate(scope: Scope) -> Iterable[CheckResult]`` and judges what the scope holds:
the load-balanced Services (with their target groups and pods), the owners of target groups (an
Ingress, an NLB Service, a TargetGroupBinding), the controller, this node's probe targets and
kube-proxy rules, or what AWS said. A part the scope lacks means "nothing to judge here", so the node
role, the cluster role's units and ``lbdoctor diagnose`` all call the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from exporter.dataplane.report import DataplaneReport
from exporter.lb.plan import Backend, LbPlan, OwnerPlan
from exporter.lb.targets import NodeTargets, TargetStatus
from exporter.model.objects import Pod, Service
from exporter.model.results import ObjectRef
from exporter.model.snapshot import ClusterSnapshot

if TYPE_CHECKING:  # the AWS context pulls in the AWS model; only the AWS checks read it
    from exporter.checks.aws_context import AwsContext
    from exporter.checks.controller import ControllerLocation


@dataclass(frozen=True)
class NodeContext:
    """The node role's own part: its targets, their probe statuses and this node's kube-proxy rules."""

    node: str
    snapshot: ClusterSnapshot
    plan: LbPlan
    targets: NodeTargets
    statuses: tuple[TargetStatus, ...]
    now: float = 0.0  # wall-clock time of the evaluation (checks never read the clock themselves)
    dataplane: DataplaneReport | None = None  # this node's kube-proxy rules and health; None: not read

    @cached_property
    def local_owners(self) -> frozenset[ObjectRef]:
        """Services/Ingresses with at least one pod on this node: the objects this agent speaks for."""
        return frozenset(placement.backend.owner for placement in self.targets.placements)


@dataclass(frozen=True, slots=True)
class ServiceScope:
    """A load-balanced Service, the target groups it backs, and the pods to judge for it."""

    service: Service
    backends: tuple[Backend, ...]
    pods: tuple[Pod, ...]


@dataclass(frozen=True, slots=True)
class ControllerScope:
    where: ControllerLocation
    lb_objects: int  # how many load-balanced objects depend on the AWS Load Balancer Controller
    # Every owner's plan, for what only some owners use: EKS Auto Mode, the GatewayClasses of routes.
    plans: tuple[OwnerPlan, ...] = ()


@dataclass(frozen=True)
class Scope:
    snapshot: ClusterSnapshot
    services: tuple[ServiceScope, ...] = ()
    plans: tuple[OwnerPlan, ...] = ()
    controller: ControllerScope | None = None
    node: NodeContext | None = None
    aws: AwsContext | None = None
    now: float = 0.0


def pods_of(snapshot: ClusterSnapshot, service: Service) -> tuple[Pod, ...]:
    """The pods a Service sends to: those its selector matches, or those its (manual) EndpointSlices name."""
    if service.selector:
        return snapshot.selected_pods(service)
    names = {
        endpoint.pod_name for eps in snapshot.slices_of(service) for endpoint in eps.endpoints if endpoint.pod_name
    }
    found = (snapshot.pods.get(f"{service.meta.namespace}/{name}") for name in sorted(names))
    return tuple(pod for pod in found if pod is not None)


def node_scope(context: NodeContext, plans: Sequence[OwnerPlan]) -> Scope:
    """The node role's scope: the Services with pods on this node (judged on those pods), their owners,
    and this node's targets."""
    grouped: dict[str, tuple[Service, dict[tuple[ObjectRef, str], Backend], dict[str, Pod]]] = {}
    for placement in context.targets.placements:
        backend = placement.backend
        if backend.service is None:
            continue
        _, backends, pods = grouped.setdefault(backend.service.meta.key, (backend.service, {}, {}))
        label = backend.service_port.label if backend.service_port is not None else ""
        backends.setdefault((backend.owner, label), backend)
        pods[placement.pod.meta.key] = placement.pod
    services = tuple(
        ServiceScope(service, tuple(backends.values()), tuple(pods.values()))
        for service, backends, pods in grouped.values()
    )
    local = context.local_owners
    return Scope(
        context.snapshot,
        services=services,
        plans=tuple(plan for plan in plans if plan.owner in local),
        node=context,
        now=context.now,
    )
