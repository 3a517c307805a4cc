"""Runbook step "check for missing endpoints": the Service's EndpointSlices and their conditions."""

from __future__ import annotations

from exporter.model.objects import Endpoint, Service
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, ResultKey, Status
from exporter.model.snapshot import ClusterSnapshot


def _unique(snapshot: ClusterSnapshot, service: Service) -> list[Endpoint]:
    seen: dict[str, Endpoint] = {}
    for eps in snapshot.slices_of(service):
        for endpoint in eps.endpoints:
            if endpoint.addresses:
                seen.setdefault(endpoint.addresses[0], endpoint)
    return list(seen.values())


def evaluate(snapshot: ClusterSnapshot, service: Service, cause: ResultKey | None = None) -> CheckResult:
    """``cause`` is the result this one follows from (a failing selector, a pod that is not ready)."""
    ref = ObjectRef("Service", service.meta.namespace, service.meta.name)
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
            caused_by=cause,
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
            f"the controller deregisters them",
            "see pod_status for why the pods are not ready",
            caused_by=cause,
        )
    extra = f", {len(terminating)} terminating" if terminating else ""
    return CheckResult(
        Check.ENDPOINTS,
        Status.OK,
        None,
        ref,
        f"{len(ready)} of {len(endpoints)} endpoints ready{extra}",
    )
