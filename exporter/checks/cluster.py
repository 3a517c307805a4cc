"""The cluster role's runbook, composed per unit of work so a change re-evaluates only what it touches.

Units: a load-balanced Service (selector, endpoints, its pods, targetPorts, traffic policy), an
owner of target groups (its annotations and the controller's reconcile failures on it), and the
controller itself. Links between results are drawn inside a unit, where the relation is known.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter.checks import (
    controller,
    endpoints,
    lb_annotations,
    pod_status,
    rollout,
    selector,
    target_port,
    traffic_policy,
)
from exporter.checks.causes import order
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import Backend, OwnerPlan, plan_all
from exporter.model.objects import Pod, Service, ServicePort
from exporter.model.results import CheckResult, ResultKey, Status
from exporter.model.snapshot import ClusterSnapshot

_BAD = (Status.FAIL, Status.WARN)


def pods_of(snapshot: ClusterSnapshot, service: Service) -> tuple[Pod, ...]:
    if service.selector:
        return snapshot.selected_pods(service)
    names = {
        endpoint.pod_name for eps in snapshot.slices_of(service) for endpoint in eps.endpoints if endpoint.pod_name
    }
    found = (snapshot.pods.get(f"{service.meta.namespace}/{name}") for name in sorted(names))
    return tuple(pod for pod in found if pod is not None)


def service_unit(snapshot: ClusterSnapshot, service: Service, backends: Sequence[Backend]) -> list[CheckResult]:
    selected = selector.evaluate(snapshot, service)
    pods = pods_of(snapshot, service)
    pod_results = [pod_status.verdict(pod) for pod in pods]
    # Missing or unready endpoints follow from the selector when it matches nothing, or from the pods when
    # none of them is fine; otherwise lbdoctor does not claim a cause it cannot see.
    cause: ResultKey | None = selected.key if selected.status is Status.FAIL else None
    if cause is None and pod_results and all(r.status is not Status.OK for r in pod_results):
        cause = next((r.key for r in pod_results if r.status is Status.FAIL), None)
    results = [selected, endpoints.evaluate(snapshot, service, cause), *pod_results]
    ports: dict[str, ServicePort] = {}
    for backend in backends:
        if backend.service_port is not None:
            ports.setdefault(backend.service_port.label, backend.service_port)
    if ports:
        results.extend(target_port.evaluate_service(service, list(ports.values()), pods))
    target_types = {b.resolution.spec.target_type for b in backends if b.resolution is not None}
    policy = traffic_policy.evaluate(snapshot, service, target_types)
    if policy is not None:
        results.append(policy)
    results.extend(rollout.evaluate_service(service, pods, backends))
    return results


def owner_unit(snapshot: ClusterSnapshot, plan: OwnerPlan) -> list[CheckResult]:
    results = lb_annotations.plan_results(plan)
    owner = plan.owner
    events = [
        event
        for event in snapshot.events.in_namespace(owner.namespace).values()
        if event.object_kind == owner.kind and event.object_name == owner.name
    ]
    annotation_failure = next((r.key for r in results if r.status is Status.FAIL), None)
    for result in controller.event_results(events, owner):
        # A model the controller cannot build because of a bad annotation: the annotation is the cause.
        if annotation_failure is not None and result.reason is not None and "BuildModel" in result.message:
            result = CheckResult(
                result.check,
                result.status,
                result.reason,
                result.object,
                result.message,
                result.remedy,
                caused_by=annotation_failure,
            )
        results.append(result)
    return results


def service_backends(plans: Sequence[OwnerPlan]) -> dict[str, list[Backend]]:
    grouped: dict[str, list[Backend]] = {}
    for plan in plans:
        for backend in plan.backends:
            if backend.service is not None:
                grouped.setdefault(backend.service.meta.key, []).append(backend)
    return grouped


def evaluate_cluster(
    snapshot: ClusterSnapshot,
    controller_config: ControllerConfig,
    where: controller.ControllerLocation,
    *,
    include_controller: bool = True,
) -> tuple[CheckResult, ...]:
    """Every check, once, over a whole snapshot, roots first (what ``lbdoctor diagnose`` prints)."""
    plans = plan_all(snapshot, controller_config)
    results: list[CheckResult] = []
    for key, backends in service_backends(plans).items():
        service = snapshot.services.get(key)
        if service is not None:
            results.extend(service_unit(snapshot, service, backends))
    for plan in plans:
        results.extend(owner_unit(snapshot, plan))
    if include_controller:
        results.extend(controller.evaluate(snapshot, where, plans))
    return order(results)
