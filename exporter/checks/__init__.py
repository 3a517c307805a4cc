"""The runbook's checks: pure functions of a scope (and probe statuses) returning results.

Each module holds one check; ``exporter.checks.registry`` describes every check once and calls them.
No I/O here.
"""

from __future__ import annotations

import structlog

from exporter.checks.context import NodeContext
from exporter.model.results import Check, CheckResult
from exporter.telemetry import ErrorSink

log = structlog.get_logger("lbdoctor.checks")


def evaluate_node(context: NodeContext) -> tuple[CheckResult, ...]:
    """Every check the node role runs, linked to causes, roots first. (Imported here: the registry imports
    every check module, and each of them imports this package first.)"""
    from exporter.checks import registry
    from exporter.checks.causes import link, order
    from exporter.checks.context import node_scope
    from exporter.lb.plan import owner_plans

    scope = node_scope(context, owner_plans(context.plan))
    return order(link(registry.evaluate(scope, registry.Role.NODE)))


class NodeRounds:
    """``evaluate_node`` for a daemon: a check that raises is logged and counted, and keeps the results of
    its last good round, so a bug on one odd object neither blanks the page nor stops the other checks."""

    def __init__(self, errors: ErrorSink) -> None:
        self._errors = errors
        self._last: dict[Check, tuple[CheckResult, ...]] = {}

    def __call__(self, context: NodeContext) -> tuple[CheckResult, ...]:
        from exporter.checks import registry
        from exporter.checks.causes import link, order
        from exporter.checks.context import node_scope
        from exporter.lb.plan import owner_plans

        scope = node_scope(context, owner_plans(context.plan))
        results: list[CheckResult] = []
        for entry in registry.checks_for(scope, registry.Role.NODE):
            try:
                found = self._last[entry.check] = tuple(entry.evaluate(scope))
            except Exception:
                self._errors.error("checks", "internal")  # before the log: formatting a traceback takes a while
                log.exception("a check failed; it keeps its last results", check=entry.check.value)
                found = self._last.get(entry.check, ())
            results.extend(found)
        return order(link(results))


__all__ = ["NodeContext", "NodeRounds", "evaluate_node"]
