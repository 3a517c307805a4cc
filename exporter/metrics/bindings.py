"""Readiness gates and TargetGroupBindings as metrics (cluster role), rendered from a publication.

Per pod, the state of its ``target-health.elbv2.k8s.aws/<binding>`` gate and how long it has waited;
per TargetGroupBinding, whether AWS still knows its target group and the controller's last reconcile
failure. No I/O; ``now`` ages the waits at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from exporter.aws.model import AwsSnapshot
from exporter.checks.controller import RECONCILE_FAILURES
from exporter.lb.readiness_gates import GateRow, parse_time
from exporter.metrics import names
from exporter.metrics.exposition import FamilyWriter, join_labels
from exporter.model.snapshot import ClusterSnapshot

ROWS_PER_STEP = 256


@dataclass(frozen=True, slots=True)
class BindingRow:
    namespace: str
    name: str
    target_group: str  # the target group's name, from its ARN ("" without one)
    exists: bool | None  # None: lbdoctor could not ask AWS (no cluster_name, the listing failed, …)
    error_reason: str | None = None  # the last reconcile failure's Event reason
    error_at: float | None = None


def target_group_name(arn: str | None) -> str:
    """arn:…:targetgroup/<name>/<id> → <name>."""
    parts = (arn or "").split(":", 5)
    resource = parts[5].split("/") if len(parts) == 6 else []
    return resource[1] if len(resource) >= 2 and resource[0] == "targetgroup" else ""


def binding_rows(snapshot: ClusterSnapshot, aws: AwsSnapshot | None) -> tuple[BindingRow, ...]:
    last: dict[str, tuple[float, str]] = {}
    for event in snapshot.events.values():
        if event.object_kind != "TargetGroupBinding" or event.reason not in RECONCILE_FAILURES:
            continue
        when = parse_time(event.last_seen)
        key = f"{event.object_namespace}/{event.object_name}"
        if when is not None and (key not in last or when > last[key][0]):
            last[key] = (when, event.reason)
    rows = []
    for key, binding in sorted(snapshot.target_group_bindings.items()):
        arn = binding.target_group_arn
        exists: bool | None = None
        if aws is not None and arn:
            exists = True if arn in aws.target_groups else False if arn in aws.missing else None
        at, reason = last.get(key, (None, None))
        rows.append(BindingRow(binding.meta.namespace, binding.meta.name, target_group_name(arn), exists, reason, at))
    return tuple(rows)


def binding_steps(
    gates: Sequence[GateRow], bindings: Sequence[BindingRow], now: float, out: list[str]
) -> Iterator[None]:
    """The four families in slices (a cluster may hold 100,000 gated pods); appends text to ``out``."""
    ready = FamilyWriter(names.READINESS_GATE_READY)
    waiting = FamilyWriter(names.READINESS_GATE_WAITING)
    for start in range(0, len(gates), ROWS_PER_STEP):
        for row in gates[start : start + ROWS_PER_STEP]:
            labels = join_labels(names.GATE_LABELS, (row.namespace, row.pod, row.binding))
            ready.add(labels, 1 if row.ready else 0)
            waited = 0.0 if row.ready or row.since is None else max(0.0, now - row.since)
            waiting.add(labels, waited)
        yield
    exists = FamilyWriter(names.BINDING_TARGET_GROUP_EXISTS)
    errors = FamilyWriter(names.BINDING_RECONCILE_ERROR)
    for binding in bindings:
        if binding.exists is not None:
            exists.add(
                join_labels(
                    (*names.BINDING_LABELS, "target_group"), (binding.namespace, binding.name, binding.target_group)
                ),
                1 if binding.exists else 0,
            )
        if binding.error_reason is not None and binding.error_at is not None:
            errors.add(
                join_labels((*names.BINDING_LABELS, "reason"), (binding.namespace, binding.name, binding.error_reason)),
                binding.error_at,
            )
    for family in (ready, waiting, exists, errors):
        out.extend(family.render())
    yield
