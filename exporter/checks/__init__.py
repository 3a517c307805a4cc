"""The runbook's checks: pure functions of a snapshot (and probe statuses) returning results.

Each module holds one check and exposes ``evaluate(context) -> Iterable[CheckResult]``. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog

from exporter.checks import health_probe, kube_proxy, lb_annotations, pod_status, target_port
from exporter.checks.causes import link_causes, order
from exporter.checks.context import NodeContext
from exporter.model.results import CheckResult
from exporter.telemetry import ErrorSink

log = structlog.get_logger("lbdoctor.checks")

NODE_CHECKS = (
    pod_status.evaluate,
    target_port.evaluate,
    lb_annotations.evaluate,
    health_probe.evaluate,
    kube_proxy.evaluate,
)


def evaluate_node(context: NodeContext) -> tuple[CheckResult, ...]:
    """Every check the node role runs, roots first."""
    results = [result for check in NODE_CHECKS for result in check(context)]
    return order(link_causes(results))


class NodeRounds:
    """``evaluate_node`` for a daemon: a check that raises is logged and counted, and keeps the results of
    its last good round, so a bug on one odd object neither blanks the page nor stops the other checks."""

    def __init__(self, errors: ErrorSink) -> None:
        self._errors = errors
        self._last: dict[Callable[[NodeContext], Iterable[CheckResult]], tuple[CheckResult, ...]] = {}

    def __call__(self, context: NodeContext) -> tuple[CheckResult, ...]:
        results: list[CheckResult] = []
        for check in NODE_CHECKS:
            try:
                found = self._last[check] = tuple(check(context))
            except Exception:
                self._errors.error("checks", "internal")  # before the log: formatting a traceback takes a while
                log.exception("a check failed; it keeps its last results", check=check.__module__)
                found = self._last.get(check, ())
            results.extend(found)
        return order(link_causes(results))


__all__ = ["NodeContext", "NodeRounds", "evaluate_node"]
