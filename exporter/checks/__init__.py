"""The runbook's checks: pure functions of a scope (a snapshot, probe statuses, what AWS said) returning results.

Each module holds one check and exposes ``evaluate(scope) -> Iterable[CheckResult]``; the registry
(``exporter.checks.registry``) describes each check once. No I/O here.
"""

from __future__ import annotations

from exporter.checks.context import NodeContext
from exporter.model.results import CheckResult


def evaluate_node(context: NodeContext) -> tuple[CheckResult, ...]:
    """Every check the node role runs, linked to causes, roots first. (Imported here: the registry imports
    every check module, and each of them imports this package first.)"""
    from exporter.checks import registry
    from exporter.checks.causes import link, order
    from exporter.checks.context import node_scope
    from exporter.lb.plan import owner_plans

    scope = node_scope(context, owner_plans(context.plan))
    return order(link(registry.evaluate(scope, registry.Role.NODE)))


__all__ = ["NodeContext", "evaluate_node"]
