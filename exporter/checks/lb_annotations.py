"""Runbook steps "Ingress annotations (ALB)", "Service annotations (NLB)", and their Gateway API counterpart
(routes, TargetGroupConfigurations, LoadBalancerConfigurations: ``gateway_config``).

The node role speaks for the load balancers that have pods on its node; the cluster role for all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from exporter.checks.context import Scope
from exporter.lb.backends import ROUTE_OWNER_KINDS, OwnerPlan, config_check
from exporter.lb.healthcheck import Problem
from exporter.model import subjects
from exporter.model.results import Check, CheckResult, ObjectRef, Status


def evaluate_ingress(scope: Scope) -> Iterable[CheckResult]:
    for plan in scope.plans:
        if plan.owner.kind == "Ingress":
            yield from plan_results(plan)


def evaluate_service(scope: Scope) -> Iterable[CheckResult]:
    for plan in scope.plans:
        if plan.owner.kind == "Service":
            yield from plan_results(plan)


def evaluate_gateway(scope: Scope) -> Iterable[CheckResult]:
    for plan in scope.plans:
        if plan.owner.kind in ROUTE_OWNER_KINDS:
            yield from plan_results(plan)


def check_for(owner: ObjectRef) -> Check | None:
    return config_check(owner)


def plan_results(plan: OwnerPlan) -> list[CheckResult]:
    """The annotation check of one owner, from its plan (the cluster role's unit of work)."""
    check = check_for(plan.owner)
    if check is None:
        return []
    problems: list[Problem] = []
    for backend in plan.backends:
        if backend.resolution is not None:
            problems.extend(p for p in backend.resolution.problems if p not in problems)
    problems.extend(p for p in plan.problems if p not in problems)
    return list(owner_results(check, plan.owner, problems))


def owner_results(check: Check, owner: ObjectRef, problems: Sequence[Problem]) -> Iterable[CheckResult]:
    about = (subjects.model(owner),)
    if not problems:
        what = {
            Check.INGRESS_ANNOTATIONS: "the alb.ingress.kubernetes.io health-check annotations",
            Check.SERVICE_ANNOTATIONS: "the NLB health-check annotations",
        }.get(check, "the Gateway API configuration (parents, backends, TargetGroupConfigurations)")
        yield CheckResult(
            check, Status.OK, None, owner, f"{what} of {owner.kind} {owner.namespace}/{owner.name} are valid"
        )
    for problem in problems:
        linked = about if subjects.linkable(problem.status) else ()
        yield CheckResult(check, problem.status, problem.reason, owner, problem.message, problem.remedy, about=linked)
