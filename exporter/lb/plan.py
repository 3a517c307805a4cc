"""Which objects the AWS Load Balancer Controller turns into target groups, and with what health check.

Computed once per snapshot; the node role derives probe targets from it and the annotation checks
report its problems, so both read the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exporter.lb import annotations as ann
from exporter.lb.healthcheck import (
    ALB,
    IP,
    NLB,
    TGB,
    ControllerConfig,
    Problem,
    Resolution,
    resolve_alb,
    resolve_nlb,
    resolve_unmanaged,
)
from exporter.model.objects import Ingress, Service, ServicePort, TargetGroupBinding
from exporter.model.results import Check, ObjectRef, Reason, Status
from exporter.model.snapshot import ClusterSnapshot

# Labels the controller puts on the TargetGroupBindings it creates itself.
_CONTROLLER_STACK_LABELS = (
    "service.k8s.aws/stack-name",
    "ingress.k8s.aws/stack-name",
    "ingress.k8s.aws/stack",
)


@dataclass(frozen=True, slots=True)
class Backend:
    """One target group: the object that owns it, the Service port behind it, and its health check."""

    lb: str  # alb | nlb | tgb
    owner: ObjectRef  # the Service (NLB), Ingress (ALB) or TargetGroupBinding
    service: Service | None  # None when the backend Service does not exist
    service_port: ServicePort | None
    resolution: Resolution | None  # None when there is nothing to resolve (missing Service)


@dataclass(frozen=True, slots=True)
class LbPlan:
    backends: tuple[Backend, ...]
    # Problems not tied to one backend (a missing backend Service, say), keyed by owner.
    problems: tuple[tuple[ObjectRef, Problem], ...] = ()


def is_nlb_service(service: Service, controller: ControllerConfig) -> bool:
    """The controller's Service scope (docs/health-check-defaults.md §1)."""
    if service.type != "LoadBalancer":
        return False
    if service.load_balancer_class is not None:
        return service.load_balancer_class == controller.load_balancer_class
    lb_type = service.meta.annotations.get(ann.NLB_TYPE, "").strip()
    if lb_type == "nlb-ip":
        return True
    target_type = service.meta.annotations.get(ann.NLB_TARGET_TYPE, "").strip().lower()
    return lb_type == "external" and target_type in ("ip", "instance")


def is_alb_ingress(ingress: Ingress, snapshot: ClusterSnapshot, controller: ControllerConfig) -> bool:
    legacy = ingress.meta.annotations.get(ann.LEGACY_INGRESS_CLASS)
    if legacy is not None:
        return legacy.strip() == "alb"
    if ingress.class_name is not None:
        ingress_class = snapshot.ingress_classes.get(ingress.class_name)
        if ingress_class is None:
            # IngressClasses may be unreadable; "alb" is the name the controller's chart installs.
            return ingress.class_name == "alb"
        return ingress_class.controller == controller.ingress_controller
    return any(
        c.is_default and c.controller == controller.ingress_controller for c in snapshot.ingress_classes.values()
    )


@dataclass(frozen=True, slots=True)
class OwnerPlan:
    """The target groups one object (NLB Service, ALB Ingress, TargetGroupBinding) owns."""

    owner: ObjectRef
    backends: tuple[Backend, ...]
    problems: tuple[Problem, ...] = ()  # problems not tied to one backend (a missing backend Service)

    @property
    def services(self) -> frozenset[str]:
        return frozenset(b.service.meta.key for b in self.backends if b.service is not None)


def plan_service(service: Service, controller: ControllerConfig) -> OwnerPlan | None:
    if not is_nlb_service(service, controller):
        return None
    resolution = resolve_nlb(service, controller)
    owner = ObjectRef("Service", service.meta.namespace, service.meta.name)
    backends = [
        Backend(NLB, owner, service, port, resolution)
        for port in service.ports
        if port.protocol.upper() in ("TCP", "UDP", "TCP_UDP")
    ]
    kept, problems = _bounded(owner, backends, Check.SERVICE_ANNOTATIONS)
    return OwnerPlan(owner, kept, problems)


def plan_ingress(ingress: Ingress, snapshot: ClusterSnapshot, controller: ControllerConfig) -> OwnerPlan | None:
    if not is_alb_ingress(ingress, snapshot, controller):
        return None
    backends: list[Backend] = []
    problems: list[tuple[ObjectRef, Problem]] = []
    _ingress_backends(ingress, snapshot, controller, backends, problems)
    owner = ObjectRef("Ingress", ingress.meta.namespace, ingress.meta.name)
    kept, too_many = _bounded(owner, backends, Check.INGRESS_ANNOTATIONS)
    return OwnerPlan(owner, kept, tuple(problem for _, problem in problems) + too_many)


def _bounded(
    owner: ObjectRef, backends: list[Backend], check: Check
) -> tuple[tuple[Backend, ...], tuple[Problem, ...]]:
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


def plan_binding(binding: TargetGroupBinding, snapshot: ClusterSnapshot) -> OwnerPlan | None:
    if any(label in binding.meta.labels for label in _CONTROLLER_STACK_LABELS):
        return None  # the controller made it for a Service or Ingress, which is planned already
    backend = _binding_backend(binding, snapshot)
    return OwnerPlan(backend.owner, (backend,))


def plan_all(snapshot: ClusterSnapshot, controller: ControllerConfig) -> list[OwnerPlan]:
    plans = [plan_service(service, controller) for service in snapshot.services.values()]
    plans += [plan_ingress(ingress, snapshot, controller) for ingress in snapshot.ingresses.values()]
    plans += [plan_binding(binding, snapshot) for binding in snapshot.target_group_bindings.values()]
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
    backends: list[Backend],
    problems: list[tuple[ObjectRef, Problem]],
) -> None:
    owner = ObjectRef("Ingress", ingress.meta.namespace, ingress.meta.name)
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
        backends.append(Backend(ALB, owner, service, port, resolve_alb(ingress, service, controller)))
    if len(backends) == first:
        # No usable backend: still judge the Ingress's own annotations, so a typo there is not hidden.
        backends.append(Backend(ALB, owner, None, None, resolve_alb(ingress, None, controller)))


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
        self, snapshot: ClusterSnapshot, services: Iterable[str], ingresses: Iterable[str], bindings: Iterable[str]
    ) -> tuple[set[ObjectRef], set[str]]:
        """Re-plan what changed Services, Ingresses and TargetGroupBindings (keys ``namespace/name``) reach.
        Returns the owners re-planned (a plan may have gone) and the Services whose users or backends may
        differ, before and after."""
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
        for owner in replan:
            touched |= self._replan(snapshot, owner)
        return replan, touched

    @staticmethod
    def _referrers(snapshot: ClusterSnapshot, namespace: str, service: str) -> set[ObjectRef]:
        """Ingresses and TargetGroupBindings that name a Service (it may just have appeared)."""
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
        return found

    def _replan(self, snapshot: ClusterSnapshot, owner: ObjectRef) -> set[str]:
        """Re-derive one owner's target groups; returns the Services affected before and after."""
        old = self.plans.pop(owner, None)
        key = f"{owner.namespace}/{owner.name}"
        new: OwnerPlan | None = None
        if owner.kind == "Service" and (service := snapshot.services.get(key)) is not None:
            new = plan_service(service, self._controller)
        elif owner.kind == "Ingress" and (ingress := snapshot.ingresses.get(key)) is not None:
            new = plan_ingress(ingress, snapshot, self._controller)
        elif owner.kind == "TargetGroupBinding" and (binding := snapshot.target_group_bindings.get(key)) is not None:
            new = plan_binding(binding, snapshot)
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
