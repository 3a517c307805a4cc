"""Incremental evaluation for the cluster role: redo only the units a change touches.

A cluster of 10,000 Services and 100,000 pods takes seconds to evaluate in full; one pod changing
must not. The evaluator keeps each unit's results (see exporter/checks/cluster.py) and, for a set of
store changes, works out which units they reach: a pod reaches the load-balanced Services of its
namespace whose selector matched it before or after; an EndpointSlice its Service; a Service or an
Ingress re-plans the owners that use it; an Event the owner it is about; Nodes the Services with
externalTrafficPolicy Local, and the owners with IPv6 instance targets; a Gateway API route re-plans
itself. A relist (or an IngressClass change, which can flip which Ingresses are ALB's, or a Gateway,
GatewayClass or configuration change, which reaches across owners) falls back to a full evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.checks import cluster, controller
from exporter.kube.store import Changes
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import OwnerPlan, PlanIndex
from exporter.model.index import namespace_of
from exporter.model.results import Check, CheckResult, ObjectRef, Status
from exporter.model.rollup import Rows
from exporter.model.snapshot import ClusterSnapshot, matches
from exporter.roles.units import GLOBAL_FRONT_ENDS, Units, route_changes
from exporter.telemetry import ErrorSink

UnitKey = tuple[str, str]

_CONTROLLER: UnitKey = ("controller", "")
# Configuration that reaches across many owners (a GatewayClass, a default TargetGroupConfiguration, an
# IngressClassParams): a change re-evaluates everything, as an IngressClass change does. They change rarely.
_GLOBAL = frozenset({"ingressclasses"}) | GLOBAL_FRONT_ENDS


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
        self._where = where
        self._include_controller = include_controller
        self._index = PlanIndex(controller_config)
        # Each unit's results, its failing and warning ones apart (what the causal rules read after every
        # round, so linking costs the failures, not the 100,000 passing results), and its status rows.
        self._units = Units(errors)
        self.last_units_evaluated = 0
        self.last_services_evaluated: frozenset[str] = frozenset()

    @property
    def plans(self) -> tuple[OwnerPlan, ...]:
        return tuple(self._index.plans.values())

    def results(self) -> tuple[CheckResult, ...]:
        return self._units.results()

    def rollup(self) -> Rows:
        """The worst status of each check per owner of target groups (and per object outside any owner)."""
        return self._units.rollup()

    def split(self) -> tuple[tuple[CheckResult, ...], tuple[CheckResult, ...]]:
        """(every result that is neither failing nor warning, the failing and warning ones)."""
        return self._units.split()

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
        self._index.rebuild(snapshot)
        self._units.start_over()  # a unit whose checks raise keeps its results
        for key in self._index.users:
            self._redo_service(snapshot, key)
        for owner in self._index.plans:
            self._redo_owner(snapshot, owner)
        self._redo_controller(snapshot)
        self._units.done()
        self.last_units_evaluated = len(self._units)

    # incremental ------------------------------------------------------------------------------
    def _incremental(self, snapshot: ClusterSnapshot, changes: Mapping[str, Changes], logs_changed: bool) -> None:
        def items(resource: str) -> dict[str, tuple[Any, Any]]:
            found = changes.get(resource)
            return found.items if found is not None else {}

        owners, services = self._index.update(
            snapshot,
            items("services"),
            items("ingresses"),
            items("targetgroupbindings"),
            route_changes(changes),
            nodes=bool(items("nodes")),
        )
        replanned = bool(owners)
        for before, after in items("pods").values():
            services |= self._services_selecting(snapshot, before, after)
        for pair in items("endpointslices").values():
            for eps in pair:
                if eps is not None and eps.service_name:
                    services.add(f"{eps.meta.namespace}/{eps.service_name}")
        if items("nodes"):
            services |= {
                key
                for key in self._index.users
                if (svc := snapshot.services.get(key)) is not None and svc.external_traffic_policy == "Local"
            }
        for pair in items("events").values():
            for event in pair:  # the object an Event is about may change between versions
                if event is not None:
                    owner = ObjectRef(event.object_kind, event.object_namespace, event.object_name)
                    if owner in self._index.plans:
                        owners.add(owner)
        controller_namespace_pods = any(namespace_of(key) == self._where.namespace for key in items("pods"))
        for key in services:
            self._redo_service(snapshot, key)
        for owner in owners:
            self._redo_owner(snapshot, owner)
        redo_controller = replanned or logs_changed or bool(items("deployments")) or controller_namespace_pods
        if redo_controller:
            self._redo_controller(snapshot)
        self.last_units_evaluated = len(services) + len(owners) + (1 if redo_controller else 0)
        self.last_services_evaluated = frozenset(services)

    def _services_selecting(self, snapshot: ClusterSnapshot, before: Any, after: Any) -> set[str]:
        """Load-balanced Services a pod change can affect: those whose selector matched it before or after,
        and those whose selector matches nothing and shares a label key with it (their message names such
        near misses)."""
        pod = after or before
        if pod is None:
            return set()  # created and deleted within one round: nothing to redo
        label_sets = [p.meta.labels for p in (before, after) if p is not None]
        found = set()
        users = self._index.users
        for key, service in snapshot.services.in_namespace(pod.meta.namespace).items():
            if key not in users:
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
        results = self._units.get(("service", service_key))
        return any(r.check is Check.SELECTOR and r.status is Status.FAIL for r in results)

    # units ------------------------------------------------------------------------------------
    def _redo_service(self, snapshot: ClusterSnapshot, key: str) -> None:
        service = snapshot.services.get(key)
        owners = self._index.users.get(key)
        if service is None or not owners:
            self._units.drop(("service", key))
            return
        plans = self._index.plans
        backends = [
            backend
            for owner in owners
            for backend in plans[owner].backends
            if backend.service is not None and backend.service.meta.key == key
        ]
        self._units.run(
            ("service", key), lambda: cluster.service_unit(snapshot, service, backends), frozenset(owners), key
        )

    def _redo_owner(self, snapshot: ClusterSnapshot, owner: ObjectRef) -> None:
        plan = self._index.plans.get(owner)
        if plan is None:
            self._units.drop(("owner", str(owner)))
            return
        self._units.run(("owner", str(owner)), lambda: cluster.owner_unit(snapshot, plan), (owner,), str(owner))

    def _redo_controller(self, snapshot: ClusterSnapshot) -> None:
        if self._include_controller:
            self._units.run(
                _CONTROLLER,
                lambda: cluster.controller_unit(snapshot, self._where, tuple(self._index.plans.values())),
                describe="controller",
            )
