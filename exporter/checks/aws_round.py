"""The AWS checks as one pure step: what AWS said + the cluster + probes -> results, metric rows, settings.

``evaluate_aws`` is what the cluster role (and ``lbdoctor diagnose``) call after
``exporter.aws.doctor.AwsDoctor`` has collected an ``AwsSnapshot``; it does no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from exporter.aws.model import AwsSnapshot
from exporter.aws.publish import real_health_checks
from exporter.checks import elb_correlation, registry
from exporter.checks.aws_context import AwsContext, merge_same
from exporter.checks.causes import order
from exporter.checks.context import Scope
from exporter.lb.aws_settings import RealHealthCheck, to_document
from exporter.lb.plan import LbPlan
from exporter.lb.targets import TargetStatus
from exporter.model.results import Check, CheckResult, ObjectRef, Status
from exporter.model.rollup import contribution
from exporter.model.snapshot import ClusterSnapshot

# The checks of the path between the load balancer and its targets (the LB's verdict is correlated with them).
_PATH_CHECKS = frozenset({Check.SECURITY_GROUPS, Check.NETWORK})


@dataclass(frozen=True, slots=True)
class ElbTargetRow:
    """One ELB target for ``lbdoctor_elb_target_state`` and the JSON API."""

    target_group: str
    namespace: str
    service: str
    target: str  # the ELB target id: an IP or an instance id
    port: int | None
    state: str
    reason: str | None
    transitions: int
    pod: str | None
    node: str | None


@dataclass(frozen=True)
class AwsRound:
    aws: AwsSnapshot
    results: tuple[CheckResult, ...]
    correlations: tuple[elb_correlation.Correlation, ...]
    targets: tuple[ElbTargetRow, ...]
    real_health_checks: tuple[RealHealthCheck, ...]

    @cached_property
    def failing(self) -> tuple[CheckResult, ...]:
        """The failing and warning results: what the causal rules read."""
        return tuple(r for r in self.results if r.status in (Status.FAIL, Status.WARN))

    @cached_property
    def steady(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.status not in (Status.FAIL, Status.WARN))

    @cached_property
    def rollup(self) -> dict[tuple[Check, ObjectRef], Status]:
        """Status per check and load balancer: the AWS checks report on the owners already."""
        return contribution(self.results)

    def targetgroups_document(self, generated_at: str) -> dict[str, Any]:
        """The ``lbdoctor.targetgroups/v1`` document the cluster role serves to the node agents."""
        return to_document(self.real_health_checks, cluster=self.aws.cluster, generated_at=generated_at)


def evaluate_aws(
    snapshot: ClusterSnapshot,
    aws: AwsSnapshot,
    plan: LbPlan,
    probes: Sequence[TargetStatus] = (),
    now: float = 0.0,
) -> AwsRound:
    """Every AWS check, correlated with the node agents' probes. Not yet linked to causes: the round's owner
    (the cluster role, ``lbdoctor diagnose``) links them together with every other result."""
    context = AwsContext(snapshot, aws, plan, tuple(probes), now)
    found = registry.evaluate(Scope(snapshot, aws=context, now=now), registry.Role.CLUSTER)
    path_findings = merge_same(r for r in found if r.check in _PATH_CHECKS)
    elb = merge_same(r for r in found if r.check is Check.ELB_TARGET_HEALTH)
    windows = [r for r in found if r.check is not Check.ELB_TARGET_HEALTH and r.check not in _PATH_CHECKS]
    correlations = elb_correlation.correlate(context.targets, context.probes)
    results = order([*elb_correlation.apply(elb, correlations, path_findings), *path_findings, *windows])
    rows = []
    for view in context.targets:
        owner = view.group.owner
        track = aws.history.get((view.group.arn, view.target.id, view.target.port))
        rows.append(
            ElbTargetRow(
                target_group=owner.name,
                namespace=owner.namespace,
                service=owner.service,
                target=view.target.id,
                port=view.target.port,
                state=view.target.state,
                reason=view.target.reason,
                transitions=track.transitions if track is not None else 0,
                pod=view.place.pod.meta.name if view.place.pod else None,
                node=view.place.node.meta.name if view.place.node else None,
            )
        )
    return AwsRound(aws, results, correlations, tuple(rows), real_health_checks(aws, context.index))
