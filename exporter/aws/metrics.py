"""Render the AWS metric families from a published round. No I/O, no awaiting.

lbdoctor_elb_target_state{target_group="k8s-shop-web-0a1b2c3d4e",namespace="shop",service="web",target="10.0.1.7",port="8080",state="unhealthy"} 1
lbdoctor_elb_target_transitions_total{target_group="k8s-shop-web-0a1b2c3d4e",namespace="shop",service="web",target="10.0.1.7",port="8080"} 3
lbdoctor_aws_api_requests_total{operation="DescribeTargetHealth",outcome="success"} 1520
lbdoctor_aws_target_health_reads_total{trigger="cloudwatch"} 3
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from exporter.aws.model import TARGET_STATES, AwsSnapshot
from exporter.metrics import names
from exporter.metrics.exposition import FamilyWriter, join_labels


class ElbTargetSample(Protocol):
    """The fields of one ELB target the families need (``exporter.checks.aws_round.ElbTargetRow``)."""

    @property
    def target_group(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def port(self) -> int | None: ...
    @property
    def state(self) -> str: ...
    @property
    def transitions(self) -> int: ...


def render_aws(targets: Sequence[ElbTargetSample], aws: AwsSnapshot, now: float | None = None) -> Iterable[str]:
    """The AWS families of one round; ``now`` (default: the round's time) ages the stalest verdict."""
    state = FamilyWriter(names.ELB_TARGET_STATE)
    transitions = FamilyWriter(names.ELB_TARGET_TRANSITIONS)
    seen: set[tuple[str, ...]] = set()
    for row in sorted(targets, key=lambda r: (r.target_group, r.target, r.port or 0)):
        values = (row.target_group, row.namespace, row.service, row.target, "" if row.port is None else str(row.port))
        if values in seen:
            continue  # one target group seen twice (two bindings to one ARN) is one set of series
        seen.add(values)
        labels = join_labels(names.ELB_TARGET_LABELS, values)
        states = TARGET_STATES if row.state in TARGET_STATES else (*TARGET_STATES, row.state)
        for known in states:
            state.add(f'{labels},state="{known}"', 1 if known == row.state else 0)
        transitions.add(labels, row.transitions)
    requests = FamilyWriter(names.AWS_API_REQUESTS)
    for (operation, outcome), count in sorted(aws.api_requests.items()):
        requests.add(join_labels(("operation", "outcome"), (operation, outcome)), count)
    yield from state.render()
    yield from transitions.render()
    yield from requests.render()
    yield from _per_service(names.AWS_API_BUDGET, {s: rate for s, (rate, _) in aws.budgets.items()})
    yield from _per_service(names.AWS_API_BUDGET_BURST, {s: burst for s, (_, burst) in aws.budgets.items()})
    yield from _per_service(names.AWS_API_BUDGET_WAIT, aws.budget_waited)
    reads = FamilyWriter(names.AWS_TARGET_HEALTH_READS)
    for trigger, count in sorted(aws.target_health_reads.items()):
        reads.add(join_labels(("trigger",), (trigger,)), count)
    yield from reads.render()
    oldest = aws.oldest_read_at
    if oldest is not None:
        age = FamilyWriter(names.AWS_TARGET_HEALTH_AGE)
        age.add("", max(0.0, (aws.taken_at if now is None else now) - oldest))
        yield from age.render()
    watched = FamilyWriter(names.AWS_CLOUDWATCH_WATCHED)
    watched.add("", aws.cloudwatch_watched)
    yield from watched.render()


def _per_service(metric: names.MetricName, values: Mapping[str, float]) -> Iterable[str]:
    family = FamilyWriter(metric)
    for service, value in sorted(values.items()):
        family.add(join_labels(("service",), (service,)), value)
    return family.render()
