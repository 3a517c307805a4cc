"""Runbook step "check the pod and Service label selectors"."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from exporter.checks.context import Scope
from exporter.model import subjects
from exporter.model.objects import Service
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, Status
from exporter.model.snapshot import ClusterSnapshot


def _ref(service: Service) -> ObjectRef:
    return ObjectRef("Service", service.meta.namespace, service.meta.name)


def _text(selector: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))


def evaluate(scope: Scope) -> Iterable[CheckResult]:
    return (verdict(scope.snapshot, served.service) for served in scope.services)


def verdict(snapshot: ClusterSnapshot, service: Service) -> CheckResult:
    result = _verdict(snapshot, service)
    if not subjects.linkable(result.status):
        return result
    return replace(result, about=(subjects.service(service.meta.namespace, service.meta.name),))


def _verdict(snapshot: ClusterSnapshot, service: Service) -> CheckResult:
    ref = _ref(service)
    if not service.selector:
        manual = snapshot.slices_of(service)
        if manual:
            return CheckResult(
                Check.SELECTOR,
                Status.OK,
                None,
                ref,
                f"Service {service.meta.key} has no selector; its endpoints are managed by hand "
                f"({len(manual)} EndpointSlice(s))",
            )
        return CheckResult(
            Check.SELECTOR,
            Status.FAIL,
            Reason.SELECTOR_MISSING,
            ref,
            f"Service {service.meta.key} has no selector and no EndpointSlices, so the load balancer has no targets",
            "add spec.selector with the labels of the pods that serve it",
        )
    unseen = snapshot.unseen("pods")
    if unseen:
        return CheckResult(
            Check.SELECTOR, Status.UNKNOWN, Reason.FORBIDDEN, ref, f"cannot check the selector: {unseen}"
        )
    selector = dict(service.selector)
    pods = snapshot.selected_pods(service)
    if pods:
        return CheckResult(
            Check.SELECTOR, Status.OK, None, ref, f"selector {_text(selector)} matches {len(pods)} pod(s)"
        )
    return CheckResult(
        Check.SELECTOR,
        Status.FAIL,
        Reason.NO_PODS_MATCH_SELECTOR,
        ref,
        f"selector {_text(selector)} of Service {service.meta.key} matches no pod in namespace "
        f"{service.meta.namespace}{_near_misses(snapshot, service.meta.namespace, selector)}",
        f"make spec.selector equal the pod template's labels (kubectl get pods -n {service.meta.namespace} "
        f"--show-labels)",
    )


def _near_misses(snapshot: ClusterSnapshot, namespace: str, selector: dict[str, str]) -> str:
    """Pods that carry a selector key with another value: the usual typo (app=web-1 vs app=web)."""
    found: dict[str, int] = {}
    for key in selector:
        for pod in snapshot.pods.in_namespace(namespace).values():
            value = pod.meta.labels.get(key)
            if value is not None and value != selector[key]:
                found[f"{key}={value}"] = found.get(f"{key}={value}", 0) + 1
    if not found:
        return ""
    closest = sorted(found.items(), key=lambda item: -item[1])[:3]
    return "; pods there have " + ", ".join(f"{label} ({count})" for label, count in closest)
