"""Root causes before consequences: link results that follow from another, and order a report.

A crash-looping pod makes its health probe fail; that failure is a consequence, not a second
problem. Links are drawn only to results that are themselves not ok.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from exporter.model.results import RUNBOOK_ORDER, Check, CheckResult, Status

_BAD = (Status.FAIL, Status.WARN)
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
    linked = []
    for result in results:
        if result.check is Check.HEALTH_PROBE and result.status in _BAD and result.target is not None:
            if result.target.pod is None:
                cause = proxy_problems.get((result.object.namespace, result.object.name)) or proxy_down
            else:
                cause = pod_problems.get((result.object.namespace, result.target.pod or "")) or port_problems.get(
                    (result.object.namespace, result.object.name, result.target.pod)
                )
            if cause is not None:
                result = replace(result, caused_by=cause.key)
        linked.append(result)
    return linked


def order(results: Sequence[CheckResult]) -> tuple[CheckResult, ...]:
    """Failing roots first, then their consequences, then warnings, unknowns and passes; runbook order within."""

    def key(result: CheckResult) -> tuple[int, int, int, str, str]:
        target = result.target.pod or "" if result.target else ""
        return (
            -result.status.severity,
            1 if result.caused_by is not None else 0,
            _STEP.get(result.check, len(_STEP)),
            str(result.object),
            target,
        )

    return tuple(sorted(results, key=key))
