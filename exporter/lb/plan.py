"""Which objects the AWS Load Balancer Controller turns into target groups, and with what health check.

Computed once per snapshot; the node role derives probe targets from it and the annotation checks
report its problems, so both read the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter.lb import annotations as ann
from exporter.lb.backends import (
    ROUTE_OWNER_KINDS,
    Backend,
    LbPlan,
    OwnerPlan,
    bounded,
    config_check,
    ipv6_node_problems,
)
from exporter.lb.gateway import plan_route
from exporter.lb.healthcheck import (
    ALB,
    AUTO_MODE,
    INSTANCE,
    IP,
    IPV6,
    LBC,
    NLB,
    TGB,
    ControllerConfig,
    Problem,
    Resolution,
    is_auto_mode_service,
    resolve_alb,
    resolve_nlb,
    resolve_unmanaged,
)
from exporter.model.gateway import AUTO_MODE_GROUP, IngressClassParams
from exporter.model.objects import Ingress, IngressClass, Service, ServicePort, TargetGroupBinding
from exporter.model.results import Check, ObjectRef, Reason, Status
from exporter.model.snapshot import ClusterSnapshot

__all__ = [
    "ROUTE_OWNER_KINDS",
    "Backend",
    "LbPlan",
    "OwnerPlan",
    "build_plan",
    "combine",
    "config_check",
    "is_alb_ingress",
    "is_nlb_service",
    "plan_all",
    "plan_binding",
    "plan_ingress",
    "plan_route",
    "plan_service",
]

# Labels the controller puts on the TargetGroupBindings it creates itself.
_CONTROLLER_STACK_LABELS = (
    "service.k8s.aws/stack-name",
    "ingress.k8s.aws/stack-name",
    "ingress.k8s.aws/stack",
    # Gateway API target groups: the stack is the Gateway (tag prefixes gateway.k8s.aws.alb / .nlb).
    "gateway.k8s.aws.alb/stack-name",
    "gateway.k8s.aws.nlb/stack-name",
)


def is_nlb_service(service: Service, controller: ControllerConfig) -> bool:
    """The controller's Service scope (docs/health-check-defaults.md §1), and EKS Auto Mode's (class
    eks.amazonaws.com/nlb, docs/front-ends.md)."""
    if service.type != "LoadBalancer":
        return False
    if service.load_balancer_class is not None:
        return service.load_balancer_class == controller.load_balancer_class or is_auto_mode_service(service)
    lb_type = service.meta.annotations.get(ann.NLB_TYPE, "").strip()
    if lb_type == "nlb-ip":
        return True
    target_type = service.meta.annotations.get(ann.NLB_TARGET_TYPE, "").strip().lower()
    return lb_type == "external" and target_type in ("ip", "instance")


def is_alb_ingress(ingress: Ingress, snapshot: ClusterSnapshot, controller: ControllerConfig) -> bool:
    return ingress_manager(ingress, snapshot, controller) is not None


def ingress_class_of(ingress: Ingress, snapshot: ClusterSnapshot) -> IngressClass | None:
    if ingress.class_name is not None:
        return snapshot.ingress_classes.get(ingress.class_name)
    return next((c for c in snapshot.ingress_classes.values() if c.is_default), None)


def ingress_manager(ingress: Ingress, snapshot: ClusterSnapshot, controller: ControllerConfig) -> str | None:
    """Who turns the Ingress into an ALB: lbc (the AWS Load Balancer Controller), eks-auto-mode, or None."""
    legacy = ingress.meta.annotations.get(ann.LEGACY_INGRESS_CLASS)
    if legacy is not None:
        return LBC if legacy.strip() == "alb" else None  # EKS Auto Mode does not read the legacy annotation
    ingress_class = ingress_class_of(ingress, snapshot)
    if ingress_class is None:
        # IngressClasses may be unreadable; "alb" is the name the controller's chart installs.
        return LBC if ingress.class_name == "alb" else None
    if ingress_class.controller == controller.ingress_controller:
        return LBC
    if ingress_class.controller == ann.AUTO_MODE_ALB_CONTROLLER:
        return AUTO_MODE
    return None


def class_params_of(ingress_class: IngressClass | None, snapshot: ClusterSnapshot) -> IngressClassParams | None:
    """The IngressClassParams an IngressClass names (the controller's or EKS Auto Mode's), when it exists."""
    if ingress_class is None or ingress_class.parameters is None:
        return None
    group, kind, name = ingress_class.parameters
    if kind != "IngressClassParams":
        return None
    front_ends = snapshot.front_ends
    index = front_ends.auto_mode_ingress_class_params if group == AUTO_MODE_GROUP else front_ends.ingress_class_params
    return index.get(name)


def plan_service(
    service: Service, controller: ControllerConfig, snapshot: ClusterSnapshot | None = None
) -> OwnerPlan | None:
    if not is_nlb_service(service, controller):
        return None
    resolution = resolve_nlb(service, controller)
    owner = ObjectRef("Service", service.meta.namespace, service.meta.name)
    manager = AUTO_MODE if is_auto_mode_service(service) else LBC
    backends = [
        Backend(NLB, owner, service, port, resolution, manager)
        for port in service.ports
        if port.protocol.upper() in ("TCP", "UDP", "TCP_UDP")
    ]
    kept, problems = bounded(owner, backends, Check.SERVICE_ANNOTATIONS)
    if snapshot is not None:
        problems += ipv6_node_problems(kept, snapshot, Check.SERVICE_ANNOTATIONS)
    return OwnerPlan(owner, kept, problems)


def plan_ingress(ingress: Ingress, snapshot: ClusterSnapshot, controller: ControllerConfig) -> OwnerPlan | None:
    manager = ingress_manager(ingress, snapshot, controller)
    if manager is None:
        return None
    backends: list[Backend] = []
    problems: list[tuple[ObjectRef, Problem]] = []
    _ingress_backends(ingress, snapshot, controller, manager, backends, problems)
    owner = ObjectRef("Ingress", ingress.meta.namespace, ingress.meta.name)
    kept, too_many = bounded(owner, backends, Check.INGRESS_ANNOTATIONS)
    found = tuple(problem for _, problem in problems) + too_many
    return OwnerPlan(owner, kept, found + ipv6_node_problems(kept, snapshot, Check.INGRESS_ANNOTATIONS))


def plan_binding(binding: TargetGroupBinding, snapshot: ClusterSnapshot) -> OwnerPlan | None:
    if any(label in binding.meta.labels for label in _CONTROLLER_STACK_LABELS):
        return None  # the controller made it for a Service, Ingress or route, which is planned already
    backend = _binding_backend(binding, snapshot)
    return OwnerPlan(backend.owner, (backend,))


def plan_all(snapshot: ClusterSnapshot, controller: ControllerConfig) -> list[OwnerPlan]:
    plans = [plan_service(service, controller, snapshot) for service in snapshot.services.values()]
    plans += [plan_ingress(ingress, snapshot, controller) for ingress in snapshot.ingresses.values()]
    plans += [plan_binding(binding, snapshot) for binding in snapshot.target_group_bindings.values()]
    plans += [plan_route(route, snapshot, controller) for route in snapshot.front_ends.all_routes()]
    return [plan for plan in plans if plan is not None]


def combine(plans: Iterable[OwnerPlan]) -> LbPlan:
    plans = list(plans)
    return LbPlan(
        tuple(backend for plan in plans for backend in plan.backends),
        tuple((plan.owner, problem) for plan in plans for problem in plan.problems),
    )


def owner_plans(plan: LbPlan) -> tuple[OwnerPlan, ...]:
    """The inverse of ``combine``: the plan split back by owner."""
    backends: dict[ObjectRef, list[Backend]] = {}
    problems: dict[ObjectRef, list[Problem]] = {}
    for backend in plan.backends:
        backends.setdefault(backend.owner, []).append(backend)
    for owner, problem in plan.problems:
        backends.setdefault(owner, [])
        problems.setdefault(owner, []).append(problem)
    return tuple(OwnerPlan(owner, tuple(found), tuple(problems.get(owner, ()))) for owner, found in backends.items())


def build_plan(snapshot: ClusterSnapshot, controller: ControllerConfig) -> LbPlan:
    return combine(plan_all(snapshot, controller))


def _ingress_backends(
    ingress: Ingress,
    snapshot: ClusterSnapshot,
    controller: ControllerConfig,
    manager: str,
    backends: list[Backend],
    problems: list[tuple[ObjectRef, Problem]],
) -> None:
    owner = ObjectRef("Ingress", ingress.meta.namespace, ingress.meta.name)
    params = class_params_of(ingress_class_of(ingress, snapshot), snapshot)
    auto_mode = manager == AUTO_MODE
    seen: set[tuple[str, int | str | None]] = set()
    first = len(backends)
    for ref in ingress.backends:
        port_key = ref.port_number if ref.port_number is not None else ref.port_name
        if (ref.service_name, port_key) in seen:
            continue
        seen.add((ref.service_name, port_key))
        service = snapshot.service(ingress.meta.namespace, ref.service_name)
        if service is None:
            problems.append(
                (
                    owner,
                    Problem(
                        Check.INGRESS_ANNOTATIONS,
                        Reason.BACKEND_NOT_FOUND,
                        Status.FAIL,
                        f"Ingress {ingress.meta.key} routes to Service {ref.service_name!r}, which does not exist "
                        f"in namespace {ingress.meta.namespace}",
                        "create the Service or fix the backend's service name",
                    ),
                )
            )
            continue
        port = (
            service.port_numbered(ref.port_number)
            if ref.port_number is not None
            else service.port_named(ref.port_name or "")
        )
        if port is None:
            problems.append(
                (
                    owner,
                    Problem(
                        Check.INGRESS_ANNOTATIONS,
                        Reason.BACKEND_NOT_FOUND,
                        Status.FAIL,
                        f"Ingress {ingress.meta.key} routes to port {port_key!r} of Service {service.meta.key}, "
                        f"which has no such port (ports: {', '.join(p.label for p in service.ports) or 'none'})",
                        "point the Ingress backend at one of the Service's ports",
                    ),
                )
            )
            continue
        resolution = resolve_alb(ingress, service, controller, auto_mode=auto_mode, class_params=params)
        backends.append(Backend(ALB, owner, service, port, resolution, manager))
    if len(backends) == first:
        # No usable backend: still judge the Ingress's own annotations, so a typo there is not hidden.
        resolution = resolve_alb(ingress, None, controller, auto_mode=auto_mode, class_params=params)
        backends.append(Backend(ALB, owner, None, None, resolution, manager))


def _binding_backend(binding: TargetGroupBinding, snapshot: ClusterSnapshot) -> Backend:
    owner = ObjectRef("TargetGroupBinding", binding.meta.namespace, binding.meta.name)
    service = snapshot.service(binding.meta.namespace, binding.service_name)
    port: ServicePort | None = None
    if service is not None:
        ref = binding.service_port
        port = service.port_numbered(ref) if isinstance(ref, int) else service.port_named(ref)
    spec = resolve_unmanaged(binding.target_type or IP)
    return Backend(TGB, owner, service, port, Resolution(spec))


class PlanIndex:
    """Every owner's plan, and which owners' target groups use each Service, kept up to date change by change.

    Both roles evaluate incrementally from it: a changed Service re-plans the owners that use it or name it
    (it may just have appeared), a changed Ingress or TargetGroupBinding re-plans itself."""

    def __init__(self, controller: ControllerConfig) -> None:
        self._controller = controller
        self.plans: dict[ObjectRef, OwnerPlan] = {}
        self.users: dict[str, set[ObjectRef]] = {}  # Service key → owners whose target groups use it

    def rebuild(self, snapshot: ClusterSnapshot) -> None:
        self.plans = {plan.owner: plan for plan in plan_all(snapshot, self._controller)}
        self.users = {}
        for plan in self.plans.values():
            for key in plan.services:
                self.users.setdefault(key, set()).add(plan.owner)

    def update(
        self,
        snapshot: ClusterSnapshot,
        services: Iterable[str],
        ingresses: Iterable[str],
        bindings: Iterable[str],
        routes: Iterable[ObjectRef] = (),
        *,
        nodes: bool = False,
    ) -> tuple[set[ObjectRef], set[str]]:
        """Re-plan what changed Services, Ingresses, TargetGroupBindings (keys ``namespace/name``) and Gateway
        API routes reach; ``nodes``: Nodes changed, which re-judges the owners with IPv6 instance targets (those
        need nodes with an IPv6 address). Returns the owners re-planned (a plan may have gone) and the Services
        whose users or backends may differ, before and after."""
        replan: set[ObjectRef] = set()
        touched: set[str] = set()
        for key in services:
            namespace, _, name = key.partition("/")
            touched.add(key)
            replan.add(ObjectRef("Service", namespace, name))
            replan.update(self.users.get(key, ()))
            replan.update(self._referrers(snapshot, namespace, name))
        replan.update(ObjectRef("Ingress", *key.split("/", 1)) for key in ingresses)
        replan.update(ObjectRef("TargetGroupBinding", *key.split("/", 1)) for key in bindings)
        replan.update(routes)
        if nodes:
            replan.update(owner for owner, plan in self.plans.items() if _ipv6_instances(plan))
        for owner in replan:
            touched |= self._replan(snapshot, owner)
        return replan, touched

    @staticmethod
    def _referrers(snapshot: ClusterSnapshot, namespace: str, service: str) -> set[ObjectRef]:
        """Ingresses, TargetGroupBindings and routes that name a Service (it may just have appeared)."""
        found = {
            ObjectRef("Ingress", namespace, ingress.meta.name)
            for ingress in snapshot.ingresses.in_namespace(namespace).values()
            if any(backend.service_name == service for backend in ingress.backends)
        }
        found |= {
            ObjectRef("TargetGroupBinding", namespace, binding.meta.name)
            for binding in snapshot.target_group_bindings.in_namespace(namespace).values()
            if binding.service_name == service
        }
        found |= {
            ObjectRef(route.kind, route.meta.namespace, route.meta.name)
            for route in snapshot.front_ends.all_routes()
            if any(b.namespace == namespace and b.name == service for b in route.backends)
        }
        return found

    def _replan(self, snapshot: ClusterSnapshot, owner: ObjectRef) -> set[str]:
        """Re-derive one owner's target groups; returns the Services affected before and after."""
        old = self.plans.pop(owner, None)
        key = f"{owner.namespace}/{owner.name}"
        new: OwnerPlan | None = None
        if owner.kind == "Service" and (service := snapshot.services.get(key)) is not None:
            new = plan_service(service, self._controller, snapshot)
        elif owner.kind == "Ingress" and (ingress := snapshot.ingresses.get(key)) is not None:
            new = plan_ingress(ingress, snapshot, self._controller)
        elif owner.kind == "TargetGroupBinding" and (binding := snapshot.target_group_bindings.get(key)) is not None:
            new = plan_binding(binding, snapshot)
        elif (
            owner.kind in ROUTE_OWNER_KINDS
            and (route := snapshot.front_ends.route(owner.kind, owner.namespace, owner.name)) is not None
        ):
            new = plan_route(route, snapshot, self._controller)
        touched = set(old.services) if old else set()
        for service_key in touched:
            users = self.users.get(service_key)
            if users is not None:
                users.discard(owner)
                if not users:
                    del self.users[service_key]
        if new is not None:
            self.plans[owner] = new
            for service_key in new.services:
                self.users.setdefault(service_key, set()).add(owner)
            touched |= new.services
        return touched


def _ipv6_instances(plan: OwnerPlan) -> bool:
    return any(
        b.resolution is not None
        and b.resolution.spec.target_type == INSTANCE
        and b.resolution.spec.ip_address_type == IPV6
        for b in plan.backends
    )
