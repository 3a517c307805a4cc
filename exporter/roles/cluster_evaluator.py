"""Incremental evaluation for the cluster role: redo only the units a change touches.

A cluster of 10,000 Services and 100,000 pods takes seconds to evaluate in full; one pod changing
must not. The evaluator keeps each unit's results (see exporter/checks/cluster.py) and, for a set of
store changes, works out which units they reach: a pod reaches the load-balanced Services of its
namespace whose selector matched it before or after; an EndpointSlice its Service; a Service or an
Ingress re-plans the owners that use it; an Event the owner it is about; Nodes the Services with
externalTrafficPolicy Local. A relist (or an IngressClass change, which can flip which Ingresses are
ALB's) falls back to a full evaluation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from exporter.checks import cluster, controller
from exporter.kube import resources
from exporter.kube.store import Changes
from exporter.lb.healthcheck import INSTANCE, IPV6, ControllerConfig
from exporter.lb.plan import (
    ROUTE_OWNER_KINDS,
    OwnerPlan,
    plan_all,
    plan_binding,
    plan_ingress,
    plan_route,
    plan_service,
)
from exporter.model.index import namespace_of
from exporter.model.results import Check, CheckResult, ObjectRef, Status
from exporter.model.snapshot import ClusterSnapshot, matches
from exporter.telemetry import ErrorSink

log = structlog.get_logger("lbdoctor.cluster")

UnitKey = tuple[str, str]

_CONTROLLER: UnitKey = ("controller", "")
# Configuration that reaches across many owners (a GatewayClass, a default TargetGroupConfiguration, an
# IngressClassParams): a change re-evaluates everything, as an IngressClass change does. They change rarely.
_GLOBAL = frozenset({"ingressclasses"} | {r.name for r in resources.FRONT_ENDS if r not in resources.ROUTES})
_ROUTE_STORES = {r.name: kind for r, kind in zip(resources.ROUTES, ROUTE_OWNER_KINDS, strict=True)}


class IncrementalEvaluator:
    """``errors`` counts a unit whose checks raised; that unit keeps its last results (a bug in one check
    on one odd object must not blank the page, nor stop every other unit)."""

    def __init__(
        self,
        controller_config: ControllerConfig,
        where: controller.ControllerLocation,
        *,
        include_controller: bool,
        errors: ErrorSink | None = None,
    ) -> None:
        self._errors = errors
        self._config = controller_config
        self._where = where
        self._include_controller = include_controller
        self._plans: dict[ObjectRef, OwnerPlan] = {}
        self._users: dict[str, set[ObjectRef]] = {}  # Service key → owners whose target groups use it
        self._units: dict[UnitKey, tuple[CheckResult, ...]] = {}
        self._previous: dict[UnitKey, tuple[CheckResult, ...]] = {}
        # Each unit's failing and warning results apart: what the causal rules read after every round, so
        # linking costs the failures, not the 100,000 passing results.
        self._failing: dict[UnitKey, tuple[tuple[CheckResult, ...], tuple[CheckResult, ...]]] = {}  # (bad, rest)
        self.last_units_evaluated = 0
        self.last_services_evaluated: frozenset[str] = frozenset()

    @property
    def plans(self) -> tuple[OwnerPlan, ...]:
        return tuple(self._plans.values())

    def results(self) -> tuple[CheckResult, ...]:
        return tuple(itertools.chain.from_iterable(self._units.values()))

    def split(self) -> tuple[tuple[CheckResult, ...], tuple[CheckResult, ...]]:
        """(every result that is neither failing nor warning, the failing and warning ones)."""
        failing = tuple(itertools.chain.from_iterable(r for r, _ in self._failing.values()))
        units = (self._failing[key][1] if key in self._failing else results for key, results in self._units.items())
        return tuple(itertools.chain.from_iterable(units)), failing

    def _set(self, key: UnitKey, results: list[CheckResult]) -> None:
        self._units[key] = tuple(results)
        bad: list[CheckResult] = []
        rest: list[CheckResult] = []
        for result in results:
            (bad if result.status is Status.FAIL or result.status is Status.WARN else rest).append(result)
        if bad:
            self._failing[key] = (tuple(bad), tuple(rest))
        else:
            self._failing.pop(key, None)

    def _drop(self, key: UnitKey) -> None:
        self._units.pop(key, None)
        self._failing.pop(key, None)

    def evaluate(
        self, snapshot: ClusterSnapshot, changes: Mapping[str, Changes] | None, logs_changed: bool = False
    ) -> tuple[CheckResult, ...]:
        """Bring the results up to date with ``snapshot``; ``changes`` None means "everything"."""
        if changes is None or any(c.full for c in changes.values()) or any(changes.get(n) for n in _GLOBAL):
            self._full(snapshot)
        else:
            self._incremental(snapshot, changes, logs_changed)
        return self.results()

    # full -------------------------------------------------------------------------------------
    def _full(self, snapshot: ClusterSnapshot) -> None:
        self._plans = {plan.owner: plan for plan in plan_all(snapshot, self._config)}
        self._users = {}
        for plan in self._plans.values():
            for key in plan.services:
                self._users.setdefault(key, set()).add(plan.owner)
        self._previous, self._units = self._units, {}  # a unit whose checks raise keeps its results
        self._failing = {}
        for key in self._users:
            self._redo_service(snapshot, key)
        for owner in self._plans:
            self._redo_owner(snapshot, owner)
        self._redo_controller(snapshot)
        self._previous = {}
        self.last_units_evaluated = len(self._units)

    # incremental ------------------------------------------------------------------------------
    def _incremental(self, snapshot: ClusterSnapshot, changes: Mapping[str, Changes], logs_changed: bool) -> None:
        def items(resource: str) -> dict[str, tuple[Any, Any]]:
            found = changes.get(resource)
            return found.items if found is not None else {}

        replan: set[ObjectRef] = set()
        services: set[str] = set()
        owners: set[ObjectRef] = set()
        for key in items("services"):
            namespace, _, name = key.partition("/")
            services.add(key)
            replan.add(ObjectRef("Service", namespace, name))
            replan.update(self._users.get(key, ()))
            replan.update(self._referrers(snapshot, namespace, name))
        for key in items("ingresses"):
            namespace, _, name = key.partition("/")
            replan.add(ObjectRef("Ingress", namespace, name))
        for key in items("targetgroupbindings"):
            namespace, _, name = key.partition("/")
            replan.add(ObjectRef("TargetGroupBinding", namespace, name))
        for store, kind in _ROUTE_STORES.items():
            for key in items(store):
                namespace, _, name = key.partition("/")
                replan.add(ObjectRef(kind, namespace, name))
        if items("nodes"):
            # An IPv6 target group's instance targets need nodes with IPv6 addresses: re-judge those owners.
            replan.update(owner for owner, plan in self._plans.items() if _ipv6_instances(plan))
        for owner in replan:
            services |= self._replan(snapshot, owner)
            owners.add(owner)
        for before, after in items("pods").values():
            services |= self._services_selecting(snapshot, before, after)
        for pair in items("endpointslices").values():
            for eps in pair:
                if eps is not None and eps.service_name:
                    services.add(f"{eps.meta.namespace}/{eps.service_name}")
        if items("nodes"):
            services |= {
                key
                for key in self._users
                if (svc := snapshot.services.get(key)) is not None and svc.external_traffic_policy == "Local"
            }
        for pair in items("events").values():
            for event in pair:  # the object an Event is about may change between versions
                if event is not None:
                    owner = ObjectRef(event.object_kind, event.object_namespace, event.object_name)
                    if owner in self._plans:
                        owners.add(owner)
        controller_namespace_pods = any(namespace_of(key) == self._where.namespace for key in items("pods"))
        for key in services:
            self._redo_service(snapshot, key)
        for owner in owners:
            self._redo_owner(snapshot, owner)
        redo_controller = bool(replan) or logs_changed or bool(items("deployments")) or controller_namespace_pods
        if redo_controller:
            self._redo_controller(snapshot)
        self.last_units_evaluated = len(services) + len(owners) + (1 if redo_controller else 0)
        self.last_services_evaluated = frozenset(services)

    def _referrers(self, snapshot: ClusterSnapshot, namespace: str, service: str) -> set[ObjectRef]:
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
        found |= {
            ObjectRef(route.kind, route.meta.namespace, route.meta.name)
            for route in snapshot.front_ends.all_routes()
            if any(b.namespace == namespace and b.name == service for b in route.backends)
        }
        return found

    def _replan(self, snapshot: ClusterSnapshot, owner: ObjectRef) -> set[str]:
        """Re-derive one owner's target groups; returns the Services affected before and after."""
        old = self._plans.pop(owner, None)
        key = f"{owner.namespace}/{owner.name}"
        new: OwnerPlan | None = None
        if owner.kind == "Service" and (service := snapshot.services.get(key)) is not None:
            new = plan_service(service, self._config, snapshot)
        elif owner.kind == "Ingress" and (ingress := snapshot.ingresses.get(key)) is not None:
            new = plan_ingress(ingress, snapshot, self._config)
        elif owner.kind == "TargetGroupBinding" and (binding := snapshot.target_group_bindings.get(key)) is not None:
            new = plan_binding(binding, snapshot)
        elif (
            owner.kind in ROUTE_OWNER_KINDS
            and (route := snapshot.front_ends.route(owner.kind, owner.namespace, owner.name)) is not None
        ):
            new = plan_route(route, snapshot, self._config)
        touched = set(old.services) if old else set()
        for service_key in touched:
            users = self._users.get(service_key)
            if users is not None:
                users.discard(owner)
                if not users:
                    del self._users[service_key]
        if new is not None:
            self._plans[owner] = new
            for service_key in new.services:
                self._users.setdefault(service_key, set()).add(owner)
            touched |= new.services
        else:
            self._drop(("owner", str(owner)))
        return touched

    def _services_selecting(self, snapshot: ClusterSnapshot, before: Any, after: Any) -> set[str]:
        """Load-balanced Services a pod change can affect: those whose selector matched it before or after,
        and those whose selector matches nothing and shares a label key with it (their message names such
        near misses)."""
        pod = after or before
        if pod is None:
            return set()  # created and deleted within one round: nothing to redo
        label_sets = [p.meta.labels for p in (before, after) if p is not None]
        found = set()
        for key, service in snapshot.services.in_namespace(pod.meta.namespace).items():
            if key not in self._users:
                continue
            if not service.selector:
                # A selector-less Service's pods are those its (manual) EndpointSlices name.
                named = {e.pod_name for eps in snapshot.slices_of(service) for e in eps.endpoints}
                if pod.meta.name in named:
                    found.add(key)
                continue
            selected = any(matches(service.selector, labels) for labels in label_sets)
            near_miss = self._selector_fails(key) and any(
                service.selector.keys() & labels.keys() for labels in label_sets
            )
            if selected or near_miss:
                found.add(key)
        return found

    def _selector_fails(self, service_key: str) -> bool:
        results = self._units.get(("service", service_key), ())
        return any(r.check is Check.SELECTOR and r.status is Status.FAIL for r in results)

    # units ------------------------------------------------------------------------------------
    def _redo_service(self, snapshot: ClusterSnapshot, key: str) -> None:
        service = snapshot.services.get(key)
        owners = self._users.get(key)
        if service is None or not owners:
            self._drop(("service", key))
            return
        backends = [
            backend
            for owner in owners
            for backend in self._plans[owner].backends
            if backend.service is not None and backend.service.meta.key == key
        ]
        self._unit(("service", key), lambda: cluster.service_unit(snapshot, service, backends))

    def _redo_owner(self, snapshot: ClusterSnapshot, owner: ObjectRef) -> None:
        plan = self._plans.get(owner)
        if plan is None:
            self._drop(("owner", str(owner)))
            return
        self._unit(("owner", str(owner)), lambda: cluster.owner_unit(snapshot, plan))

    def _redo_controller(self, snapshot: ClusterSnapshot) -> None:
        if self._include_controller:
            self._unit(_CONTROLLER, lambda: cluster.controller_unit(snapshot, self._where, tuple(self._plans.values())))

    def _unit(self, key: UnitKey, evaluate: Callable[[], Iterable[CheckResult]]) -> None:
        try:
            self._set(key, list(evaluate()))
        except Exception:
            if self._errors is not None:
                self._errors.error("checks", "internal")
            log.exception("a check failed; its unit keeps its last results", unit=f"{key[0]} {key[1]}".strip())
            kept = self._units.get(key, self._previous.get(key))
            if kept is not None:
                self._set(key, list(kept))


def _ipv6_instances(plan: OwnerPlan) -> bool:
    return any(
        b.resolution is not None
        and b.resolution.spec.target_type == INSTANCE
        and b.resolution.spec.ip_address_type == IPV6
        for b in plan.backends
    )
