"""The cluster role's runbook, composed per unit of work so a change re-evaluates only what it touches.

Units: a load-balanced Service (selector, endpoints, its pods, targetPorts, traffic policy), an
owner of target groups (its annotations and the controller's reconcile failures on it), and the
controller itself. Each unit is a ``Scope`` the registry's checks evaluate; causes are linked over
the whole round afterwards (``exporter.checks.causes``), not inside a unit.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter.checks import registry
from exporter.checks.causes import link, order
from exporter.checks.context import ControllerScope, Scope, ServiceScope, pods_of
from exporter.checks.controller import ControllerLocation
from exporter.lb.healthcheck import LBC, ControllerConfig
from exporter.lb.plan import Backend, OwnerPlan, plan_all
from exporter.model.objects import Service
from exporter.model.results import CheckResult
from exporter.model.snapshot import ClusterSnapshot

__all__ = ["controller_unit", "evaluate_cluster", "owner_unit", "pods_of", "service_backends", "service_unit"]


def service_unit(snapshot: ClusterSnapshot, service: Service, backends: Sequence[Backend]) -> list[CheckResult]:
    scope = Scope(snapshot, services=(ServiceScope(service, tuple(backends), pods_of(snapshot, service)),))
    return registry.evaluate(scope, registry.Role.CLUSTER)


def owner_unit(snapshot: ClusterSnapshot, plan: OwnerPlan) -> list[CheckResult]:
    return registry.evaluate(Scope(snapshot, plans=(plan,)), registry.Role.CLUSTER)


def controller_unit(
    snapshot: ClusterSnapshot, where: ControllerLocation, plans: Sequence[OwnerPlan]
) -> list[CheckResult]:
    """The controllers' own health; the AWS Load Balancer Controller's counts the owners it reconciles (not
    those of EKS Auto Mode)."""
    lb_objects = sum(1 for plan in plans if plan.manager == LBC)
    scope = Scope(snapshot, controller=ControllerScope(where, lb_objects, tuple(plans)))
    return registry.evaluate(scope, registry.Role.CLUSTER)


def service_backends(plans: Sequence[OwnerPlan]) -> dict[str, list[Backend]]:
    grouped: dict[str, list[Backend]] = {}
    for plan in plans:
        for backend in plan.backends:
            if backend.service is not None:
                grouped.setdefault(backend.service.meta.key, []).append(backend)
    return grouped


def cluster_results(
    snapshot: ClusterSnapshot,
    controller_config: ControllerConfig,
    where: ControllerLocation,
    *,
    include_controller: bool = True,
) -> list[CheckResult]:
    """Every object check, once, over a whole snapshot; not yet linked (``lbdoctor diagnose`` adds the
    kube-proxy and AWS steps before it links the round)."""
    plans = plan_all(snapshot, controller_config)
    results: list[CheckResult] = []
    for key, backends in service_backends(plans).items():
        service = snapshot.services.get(key)
        if service is not None:
            results.extend(service_unit(snapshot, service, backends))
    for plan in plans:
        results.extend(owner_unit(snapshot, plan))
    if include_controller:
        results.extend(controller_unit(snapshot, where, plans))
    return results


def evaluate_cluster(
    snapshot: ClusterSnapshot,
    controller_config: ControllerConfig,
    where: ControllerLocation,
    *,
    include_controller: bool = True,
) -> tuple[CheckResult, ...]:
    """Every object check, once, over a whole snapshot, linked and roots first."""
    return order(link(cluster_results(snapshot, controller_config, where, include_controller=include_controller)))
