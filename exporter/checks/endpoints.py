"""Runbook step "check for missing endpoints": the Service's EndpointSlices and their conditions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from exporter.checks import pod_status
from exporter.checks.context import Scope
from exporter.model import subjects
from exporter.model.objects import Endpoint, Pod, Service
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, Status, Subject
from exporter.model.snapshot import ClusterSnapshot


def _unique(snapshot: ClusterSnapshot, service: Service) -> list[Endpoint]:
    seen: dict[str, Endpoint] = {}
    for eps in snapshot.slices_of(service):
        for endpoint in eps.endpoints:
            if endpoint.addresses:
                seen.setdefault(endpoint.addresses[0], endpoint)
    return list(seen.values())


def evaluate(scope: Scope) -> Iterable[CheckResult]:
    return (verdict(scope.snapshot, served.service, served.pods) for served in scope.services)


def verdict(snapshot: ClusterSnapshot, service: Service, pods: Sequence[Pod] = ()) -> CheckResult:
    """``pods``: the pods the Service selects. When none of them is fine, a failing result is about them too,
    so the causal rules name a pod that is not ready as the reason none of the endpoints is; while one pod is
    fine, the pods do not explain it and no cause is claimed."""
    ref = ObjectRef("Service", service.meta.namespace, service.meta.name)

    def failing_about() -> tuple[Subject, ...]:
        about: tuple[Subject, ...] = (subjects.service(service.meta.namespace, service.meta.name),)
        if pods and all(pod_status.verdict(pod).status is not Status.OK for pod in pods):
            about += tuple(subjects.pod(pod.meta.namespace, pod.meta.name) for pod in pods)
        return about

    unseen = snapshot.unseen("endpointslices")
    if unseen:
        return CheckResult(Check.ENDPOINTS, Status.UNKNOWN, Reason.FORBIDDEN, ref, f"cannot check endpoints: {unseen}")
    endpoints = _unique(snapshot, service)
    describe = (
        f"kubectl get endpointslices -n {service.meta.namespace} -l kubernetes.io/service-name={service.meta.name}"
    )
    if not endpoints:
        return CheckResult(
            Check.ENDPOINTS,
            Status.FAIL,
            Reason.NO_ENDPOINTS,
            ref,
            f"Service {service.meta.key} has no endpoints: the load balancer has no target to send to",
            f"make the selector match running pods ({describe})",
            about=failing_about(),
        )
    ready = [e for e in endpoints if e.ready is not False]
    terminating = [e for e in endpoints if e.terminating]
    if not ready:
        names = ", ".join(sorted(e.pod_name or e.addresses[0] for e in endpoints)[:5])
        return CheckResult(
            Check.ENDPOINTS,
            Status.FAIL,
            Reason.NO_READY_ENDPOINTS,
            ref,
            f"none of the {len(endpoints)} endpoints of Service {service.meta.key} is ready ({names}); "
            "the AWS Load Balancer Controller registers only ready endpoints (and pods that wait only on its"
            " readiness gate)",
            "see pod_status for why the pods are not ready",
            about=failing_about(),
        )
    extra = f", {len(terminating)} terminating" if terminating else ""
    return CheckResult(
        Check.ENDPOINTS,
        Status.OK,
        None,
        ref,
        f"{len(ready)} of {len(endpoints)} endpoints ready{extra}",
    )
