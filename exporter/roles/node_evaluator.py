"""Incremental evaluation for the node role: a change re-plans only what it touches, a finished probe
re-evaluates only its owner.

A node agent watches every Service, Ingress and TargetGroupBinding of the cluster (any may put a target on
its node) but only its own node's pods, and publishes a round whenever a probe finishes. Re-planning every
load balancer and re-judging every target each time made it cost per round what the cluster holds. Now:

- plans are kept per owner (``PlanIndex``, shared with the cluster role): a changed Service re-plans the
  owners using or naming it, a changed Ingress or TargetGroupBinding itself; a pod of this node reaches the
  owners of the Services selecting it; an EndpointSlice only a selector-less Service (whose pods it names);
  an IngressClass, this node's Node object or new health-check settings from AWS re-derive everything;
- each owner with something on this node keeps its plan (AWS's real health checks applied), its targets and
  its placements (pods behind its target groups);
- units: an owner (its annotations and the verdicts of its targets), a load-balanced Service with pods here
  (their status and targetPorts), and the node (its kube-proxy rules). A unit is evaluated again when what
  it reads changed: an owner when it was re-derived or one of its targets' statuses changed (the scheduler
  replaces a status when a probe finishes), a Service when its placements changed, the node when its
  kube-proxy report or the Services it names changed.

Every unit is a pure function of what it reads: a probe verdict's flapping window counts from the probe's
own time and the kube-proxy verdicts from the report's, never from the clock, so a unit not evaluated again
says what a full evaluation would. A randomised test (tests/test_node_incremental.py) proves it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from exporter.checks import registry
from exporter.checks.causes import link_round
from exporter.checks.context import NodeContext, Scope, ServiceScope
from exporter.dataplane.report import DataplaneReport
from exporter.kube.store import Changes
from exporter.lb.aws_settings import RealHealthCheck
from exporter.lb.aws_settings import apply as apply_real_checks
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import Backend, LbPlan, OwnerPlan, PlanIndex
from exporter.lb.targets import NodeTargets, ProbeDefaults, ProbeTarget, TargetStatus, node_targets
from exporter.model.objects import Pod
from exporter.model.results import CheckResult, ObjectRef
from exporter.model.rollup import Rows
from exporter.model.snapshot import ClusterSnapshot, matches
from exporter.roles.units import GLOBAL_FRONT_ENDS, Units, route_changes
from exporter.telemetry import ErrorSink

_NO_TARGETS = NodeTargets((), ())
# Resources whose change re-derives everything: which Ingresses are ALB's, this node's address and zone.
_EVERYTHING = ("ingressclasses", "nodes", *sorted(GLOBAL_FRONT_ENDS))
KUBE_SYSTEM = "kube-system"  # where this node's kube-proxy pod runs (the kube_proxy check names it)


@dataclass(frozen=True, slots=True)
class Local:
    """What one owner of target groups has on this node."""

    plan: OwnerPlan  # with AWS's real health checks applied
    targets: NodeTargets

    @property
    def services(self) -> frozenset[str]:
        return frozenset(p.backend.service.meta.key for p in self.targets.placements if p.backend.service)


@dataclass(frozen=True)
class NodeRound:
    """What a round publishes: every result (failing ones linked), the status rows, this node's owners."""

    results: tuple[CheckResult, ...]
    rollup: Rows
    plans: tuple[OwnerPlan, ...]


class NodeEvaluator:
    def __init__(
        self,
        node: str,
        controller: ControllerConfig,
        defaults: ProbeDefaults | None = None,
        errors: ErrorSink | None = None,
    ) -> None:
        self.node = node
        self._node_ref = ObjectRef("Node", "", node)
        self._defaults = defaults or ProbeDefaults()
        self._index = PlanIndex(controller)
        self._real: tuple[RealHealthCheck, ...] = ()
        self._real_by_owner: dict[ObjectRef, tuple[RealHealthCheck, ...]] = {}
        self._local: dict[ObjectRef, Local] = {}
        self._by_service: dict[str, set[ObjectRef]] = {}  # Service key → local owners with pods of it here
        self._targets: tuple[ProbeTarget, ...] = ()
        self._units = Units(errors)
        self._statuses: dict[ObjectRef, tuple[TargetStatus, ...]] = {}  # per owner, as last evaluated
        self._dataplane: DataplaneReport | None = None
        self._owners_due: set[ObjectRef] = set()
        self._services_due: set[str] = set()
        self._node_due = True
        self._round: tuple[tuple[CheckResult, ...], int, NodeRound] | None = None  # (failing, version, round)
        self.last_units_evaluated = 0
        self.last_owners_evaluated: frozenset[ObjectRef] = frozenset()

    # plans and targets --------------------------------------------------------------------------
    @property
    def targets(self) -> tuple[ProbeTarget, ...]:
        """Every target this node probes, one per target group, pod and port/path."""
        return self._targets

    @property
    def plans(self) -> tuple[OwnerPlan, ...]:
        """The owners of target groups with something on this node (what its status page shows)."""
        return tuple(local.plan for local in self._local.values())

    def derive(
        self,
        snapshot: ClusterSnapshot,
        changes: Mapping[str, Changes] | None,
        real_checks: Sequence[RealHealthCheck] = (),
    ) -> bool:
        """Bring plans and this node's targets up to date with ``snapshot``; ``changes`` None means everything.
        Returns whether the targets changed (the scheduler needs them then)."""
        real = tuple(real_checks)
        everything = (
            changes is None
            or any(c.full for c in changes.values())
            or any(changes.get(name) for name in _EVERYTHING)
            or real != self._real
        )
        if everything:
            self._set_real(real)
            self._index.rebuild(snapshot)
            owners = set(self._index.plans) | set(self._local)
            self._node_due = True
        else:
            assert changes is not None

            def items(resource: str) -> dict[str, tuple[Any, Any]]:
                found = changes.get(resource)
                return found.items if found is not None else {}

            owners, services = self._index.update(
                snapshot, items("services"), items("ingresses"), items("targetgroupbindings"), route_changes(changes)
            )
            pods = items("pods")
            for before, after in pods.values():
                services |= self._services_selecting(snapshot, before, after)
            for pair in items("endpointslices").values():
                services |= self._selectorless(snapshot, pair)
            for key in services:
                owners.update(self._index.users.get(key, ()))
            if any(key.startswith(KUBE_SYSTEM + "/") for key in pods):
                self._node_due = True  # the kube_proxy check names this node's kube-proxy pod
        for owner in owners:
            self._rederive(snapshot, owner)
        targets = tuple(target for local in self._local.values() for target in local.targets.targets)
        changed = targets != self._targets
        self._targets = targets
        return changed

    def _set_real(self, real: tuple[RealHealthCheck, ...]) -> None:
        self._real = real
        grouped: dict[ObjectRef, list[RealHealthCheck]] = {}
        for check in real:
            grouped.setdefault(check.owner, []).append(check)
        self._real_by_owner = {owner: tuple(checks) for owner, checks in grouped.items()}

    def _services_selecting(self, snapshot: ClusterSnapshot, before: Pod | None, after: Pod | None) -> set[str]:
        """Load-balanced Services whose selector matched this node's pod before or after the change, and those
        without a selector whose EndpointSlices name it."""
        pod = after or before
        assert pod is not None
        label_sets = [p.meta.labels for p in (before, after) if p is not None]
        users = self._index.users
        found = set()
        for key, service in snapshot.services.in_namespace(pod.meta.namespace).items():
            if key not in users:
                continue
            if service.selector:
                if any(matches(service.selector, labels) for labels in label_sets):
                    found.add(key)
            elif any(e.pod_name == pod.meta.name for eps in snapshot.slices_of(service) for e in eps.endpoints):
                found.add(key)
        return found

    def _selectorless(self, snapshot: ClusterSnapshot, pair: tuple[Any, Any]) -> set[str]:
        """The load-balanced Service of a changed EndpointSlice, when it has no selector: its pods are the ones
        its slices name. A Service with a selector finds its pods by labels; its slices do not matter here."""
        found = set()
        for eps in pair:
            if eps is None or not eps.service_name:
                continue
            key = f"{eps.meta.namespace}/{eps.service_name}"
            service = snapshot.services.get(key)
            if key in self._index.users and service is not None and not service.selector:
                found.add(key)
        return found

    def _rederive(self, snapshot: ClusterSnapshot, owner: ObjectRef) -> None:
        plan = self._index.plans.get(owner)
        old = self._local.get(owner)
        new: Local | None = None
        if plan is not None:
            real = self._real_by_owner.get(owner)
            if real:
                plan = replace(plan, backends=apply_real_checks(LbPlan(plan.backends), real).backends)
            targets = node_targets(LbPlan(plan.backends), snapshot, self.node, self._defaults)
            if targets.targets or targets.placements:
                new = Local(plan, targets)
        if new is None:
            self._local.pop(owner, None)
        else:
            self._local[owner] = new
        before = old.services if old is not None else frozenset()
        after = new.services if new is not None else frozenset()
        for key in before - after:
            holders = self._by_service.get(key)
            if holders is not None:
                holders.discard(owner)
                if not holders:
                    del self._by_service[key]
        for key in after:
            self._by_service.setdefault(key, set()).add(owner)
        self._owners_due.add(owner)
        self._services_due |= before | after
        if before != after:
            self._node_due = True  # the Services the kube_proxy check reports on, ok or not

    # evaluation ---------------------------------------------------------------------------------
    def evaluate(
        self,
        snapshot: ClusterSnapshot,
        statuses: Iterable[TargetStatus],
        dataplane: DataplaneReport | None,
        now: float,
        *,
        everything: bool = False,
    ) -> NodeRound:
        """Evaluate the units that what changed reaches, and return the round. ``statuses`` are the
        scheduler's; a target's status is replaced, never mutated, when its probe finishes."""
        grouped: dict[ObjectRef, list[TargetStatus]] = {}
        for status in statuses:
            grouped.setdefault(status.target.owner, []).append(status)
        for owner in grouped.keys() | self._statuses.keys():
            new = tuple(grouped.get(owner, ()))
            old = self._statuses.get(owner, ())
            if len(new) != len(old) or any(a is not b for a, b in zip(new, old, strict=True)):
                self._owners_due.add(owner)
                if new:
                    self._statuses[owner] = new
                else:
                    del self._statuses[owner]
        if dataplane is not self._dataplane:
            self._dataplane = dataplane
            self._node_due = True
        if everything:
            self._units.start_over()
            self._owners_due = set(self._local) | set(self._statuses)
            self._services_due = set(self._by_service)
            self._node_due = True
        owners, services = self._owners_due, self._services_due
        self._owners_due, self._services_due = set(), set()
        for owner in owners:
            self._redo_owner(snapshot, owner, now)
        for key in services:
            self._redo_service(snapshot, key, now)
        redo_node, self._node_due = self._node_due, False
        if redo_node:
            self._redo_node(snapshot, now)
        if everything:
            self._units.done()
        self.last_units_evaluated = len(owners) + len(services) + (1 if redo_node else 0)
        self.last_owners_evaluated = frozenset(owners)
        return self._published()

    def _published(self) -> NodeRound:
        """The round: passing results as they are, failing ones linked by the causal rules; the last round
        again while no unit changed."""
        version = self._units.version
        if self._round is not None and self._round[1] == version:
            return self._round[2]
        steady, failing = self._units.split()
        linked = tuple(link_round(failing, ()))
        found = NodeRound((*steady, *linked), self._units.rollup(), self.plans)
        self._round = (failing, version, found)
        return found

    def _redo_owner(self, snapshot: ClusterSnapshot, owner: ObjectRef, now: float) -> None:
        local = self._local.get(owner)
        statuses = self._statuses.get(owner, ())
        if local is None and not statuses:
            self._units.drop(("owner", str(owner)))
            return
        targets = local.targets if local is not None else _NO_TARGETS
        plan = LbPlan(local.plan.backends) if local is not None else LbPlan(())
        # The annotations of an owner with pods here; the verdicts of its targets (a node path included).
        plans = (local.plan,) if local is not None and local.targets.placements else ()
        context = NodeContext(self.node, snapshot, plan, targets, statuses, now, None)
        scope = Scope(snapshot, plans=plans, node=context, now=now)
        self._units.run(("owner", str(owner)), lambda: registry.evaluate(scope, registry.Role.NODE), (owner,))

    def _redo_service(self, snapshot: ClusterSnapshot, key: str, now: float) -> None:
        owners = self._by_service.get(key)
        if not owners:
            self._units.drop(("service", key))
            return
        backends: dict[tuple[ObjectRef, str], Backend] = {}
        pods: dict[str, Pod] = {}
        service = None
        for owner in sorted(owners, key=str):
            for placement in self._local[owner].targets.placements:
                backend = placement.backend
                if backend.service is None or backend.service.meta.key != key:
                    continue
                service = backend.service
                label = backend.service_port.label if backend.service_port is not None else ""
                backends.setdefault((owner, label), backend)
                pods[placement.pod.meta.key] = placement.pod
        assert service is not None
        scope = Scope(snapshot, services=(ServiceScope(service, tuple(backends.values()), tuple(pods.values())),))
        scope = replace(scope, now=now)
        self._units.run(("service", key), lambda: registry.evaluate(scope, registry.Role.NODE), owners, key)

    def _redo_node(self, snapshot: ClusterSnapshot, now: float) -> None:
        """This node's kube-proxy rules, reported on the node (and on the Services with pods here)."""
        report = self._dataplane
        if report is None:
            self._units.drop(("node", self.node))
            return
        backends = tuple(placement.backend for local in self._local.values() for placement in local.targets.placements)
        context = NodeContext(self.node, snapshot, LbPlan(backends), _NO_TARGETS, (), now, report)
        scope = Scope(snapshot, node=context, now=now)
        self._units.run(
            ("node", self.node), lambda: registry.evaluate(scope, registry.Role.NODE), (self._node_ref,), "node"
        )
