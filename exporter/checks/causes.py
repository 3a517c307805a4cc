"""Root causes before consequences: link results that follow from another, and order a report.

A crash-looping pod makes its health probe fail; that failure is a consequence, not a second
problem. Links are drawn only to results that are themselves not ok.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from exporter.model.results import RUNBOOK_ORDER, Check, CheckResult, Reason, Status

_BAD = (Status.FAIL, Status.WARN)
# Probe failures a wrong health check (path, codes, timeout) explains.
_HEALTH_CHECK_MISMATCH = frozenset({Reason.RESPONSE_CODE_MISMATCH, Reason.TIMEOUT, Reason.FLAPPING})
_STEP = {check: index for index, check in enumerate(RUNBOOK_ORDER)}


def link_causes(results: Iterable[CheckResult]) -> list[CheckResult]:
    results = list(results)
    pod_problems = {
        (r.object.namespace, r.object.name): r for r in results if r.check is Check.POD_STATUS and r.status in _BAD
    }
    port_problems = {
        (r.object.namespace, r.object.name, r.target.pod): r
        for r in results
        if r.check is Check.TARGET_PORT and r.status in _BAD and r.target is not None
    }
    # A health check sent through kube-proxy (an instance target's node path) fails when kube-proxy's rules
    # for its Service are wrong, or kube-proxy itself is unhealthy.
    proxy_problems: dict[tuple[str, str], CheckResult] = {}
    proxy_down: CheckResult | None = None
    for r in results:
        if r.check is Check.KUBE_PROXY and r.status in _BAD:
            if r.object.kind == "Service":
                proxy_problems.setdefault((r.object.namespace, r.object.name), r)
            elif r.object.kind == "Node" and r.status is Status.FAIL and proxy_down is None:
                proxy_down = r
    # A Gateway route whose TargetGroupConfiguration lost the default's health-check fields (the shallow merge):
    # its failing probes check what the merge left, not what was meant.
    merge_problems = {
        r.object: r
        for r in results
        if r.check is Check.GATEWAY_CONFIG and r.reason is Reason.HEALTH_CHECK_CONFIG_REPLACES_DEFAULT
    }
    linked = []
    for result in results:
        if result.check is Check.HEALTH_PROBE and result.status in _BAD and result.target is not None:
            if result.target.pod is None:
                cause = proxy_problems.get((result.object.namespace, result.object.name)) or proxy_down
            else:
                cause = pod_problems.get((result.object.namespace, result.target.pod or "")) or port_problems.get(
                    (result.object.namespace, result.object.name, result.target.pod)
                )
            if cause is None and result.reason in _HEALTH_CHECK_MISMATCH:
                cause = merge_problems.get(result.object)
            if cause is not None:
                result = replace(result, caused_by=cause.key)
        linked.append(result)
    return linked


def order(results: Sequence[CheckResult]) -> tuple[CheckResult, ...]:
    """Roots first, each followed by the results that follow from it; failing before warning before
    unknown before passing, in runbook order within. Duplicates (the same verdict on the same object
    reached twice, e.g. a pod behind two Services) are dropped."""

    def key(result: CheckResult) -> tuple[int, int, str, str]:
        target = result.target.pod or "" if result.target else ""
        return (-result.status.severity, _STEP.get(result.check, len(_STEP)), str(result.object), target)

    unique: dict[tuple[object, ...], CheckResult] = {}
    for result in results:
        unique.setdefault((result.key, result.reason, result.status), result)
    ranked = sorted(unique.values(), key=key)
    present = {result.key for result in ranked}
    followers: dict[object, list[CheckResult]] = {}
    roots: list[CheckResult] = []
    for result in ranked:
        if result.caused_by is not None and result.caused_by in present and result.caused_by != result.key:
            followers.setdefault(result.caused_by, []).append(result)
        else:
            roots.append(result)
    ordered: list[CheckResult] = []
    seen: set[int] = set()

    def emit(result: CheckResult) -> None:
        if id(result) in seen:
            return
        seen.add(id(result))
        ordered.append(result)
        for follower in followers.pop(result.key, []):
            emit(follower)

    for root in roots:
        emit(root)
    for remaining in followers.values():  # a cycle of causes (should not happen): keep them anyway
        for result in remaining:
            emit(result)
    return tuple(ordered)
