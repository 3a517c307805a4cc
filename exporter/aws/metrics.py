"""Render the AWS metric families from a published round. No I/O, no awaiting.

lbdoctor_elb_target_state{target_group="k8s-shop-web-0a1b2c3d4e",namespace="shop",service="web",target="10.0.1.7",port="8080",state="unhealthy"} 1
lbdoctor_elb_target_transitions_total{target_group="k8s-shop-web-0a1b2c3d4e",namespace="shop",service="web",target="10.0.1.7",port="8080"} 3
lbdoctor_aws_api_requests_total{operation="DescribeTargetHealth",outcome="success"} 1520
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from exporter.aws.model import TARGET_STATES
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


def render_aws(targets: Sequence[ElbTargetSample], api_requests: Mapping[tuple[str, str], int]) -> Iterable[str]:
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
    for (operation, outcome), count in sorted(api_requests.items()):
        requests.add(join_labels(("operation", "outcome"), (operation, outcome)), count)
    yield from state.render()
    yield from transitions.render()
    yield from requests.render()
