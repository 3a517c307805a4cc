"""The runbook's checks: pure functions of a snapshot (and probe statuses) returning results.

Each module holds one check and exposes ``evaluate(context) -> Iterable[CheckResult]``. No I/O here.
"""

from __future__ import annotations

from exporter.checks import health_probe, kube_proxy, lb_annotations, pod_status, target_port
from exporter.checks.causes import link_causes, order
from exporter.checks.context import NodeContext
from exporter.model.results import CheckResult

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


__all__ = ["NodeContext", "evaluate_node"]
