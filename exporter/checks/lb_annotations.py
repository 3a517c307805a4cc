"""Runbook steps "Ingress annotations (ALB)" and "Service annotations (NLB)".

The node role speaks for the load balancers that have pods on its node; the cluster role for all.
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter.checks.context import NodeContext
from exporter.lb.plan import LbPlan
from exporter.model.results import Check, CheckResult, ObjectRef, Status


def evaluate(context: NodeContext) -> Iterable[CheckResult]:
    return annotation_results(context.plan, context.local_owners)


def annotation_results(plan: LbPlan, scope: frozenset[ObjectRef] | None = None) -> Iterable[CheckResult]:
    for check in (Check.INGRESS_ANNOTATIONS, Check.SERVICE_ANNOTATIONS):
        for owner, problems in plan.owners(check).items():
            if scope is not None and owner not in scope:
                continue
            if not problems:
                family = "alb.ingress.kubernetes.io" if check is Check.INGRESS_ANNOTATIONS else "NLB"
                yield CheckResult(
                    check,
                    Status.OK,
                    None,
                    owner,
                    f"the {family} health-check annotations of {owner.kind} {owner.namespace}/{owner.name} are valid",
                )
            for problem in problems:
                yield CheckResult(check, problem.status, problem.reason, owner, problem.message, problem.remedy)
