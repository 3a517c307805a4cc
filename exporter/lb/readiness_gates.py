"""The AWS Load Balancer Controller's readiness gates: which pods wait for the load balancer, and since when.

With the namespace label ``elbv2.k8s.aws/pod-readiness-gate-inject=enabled`` the controller's webhook
gives each new pod behind an ip-target TargetGroupBinding the readiness gate
``target-health.elbv2.k8s.aws/<binding name>`` and sets its condition True once the load balancer
reports the target healthy (reason and message carry AWS's verdict meanwhile). A pod waiting on it is
not Ready, so a rollout waits too.

``GateTracker`` keeps one row per pod and gate, updated from the pod store's changes (a 100,000-pod
cluster is scanned only on a full relist). Pure: no I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exporter.model.objects import Pod, TargetGroupBinding

# Readiness gates the controller injects (current and legacy prefix).
LB_GATE_PREFIXES = ("target-health.elbv2.k8s.aws/", "target-health.alb.ingress.k8s.aws/")


@dataclass(frozen=True, slots=True)
class GateRow:
    """One pod's readiness gate for one TargetGroupBinding."""

    namespace: str
    pod: str
    binding: str  # the TargetGroupBinding the gate names
    ready: bool  # the condition is True: the load balancer counts the target healthy
    since: float | None  # Unix time it last changed (or the pod was created, before the first verdict)
    reason: str | None = None  # the condition's reason: AWS's reason code while waiting


def parse_time(value: str | None) -> float | None:
    """RFC 3339 as the API server writes it (``2026-11-27T00:00:00Z``) to Unix time; None if unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def rows_of(pod: Pod) -> tuple[GateRow, ...]:
    rows = []
    for gate in pod.readiness_gates:
        prefix = next((p for p in LB_GATE_PREFIXES if gate.startswith(p)), None)
        if prefix is None or pod.meta.deleting:
            continue
        condition = pod.condition(gate)
        ready = condition is not None and condition.status == "True"
        since = parse_time(condition.last_transition_time) if condition is not None else None
        rows.append(
            GateRow(
                pod.meta.namespace,
                pod.meta.name,
                gate.removeprefix(prefix),
                ready,
                since if since is not None else parse_time(pod.created),
                condition.reason if condition is not None else None,
            )
        )
    return tuple(rows)


class GateTracker:
    """Rows of every pod with a load-balancer readiness gate, kept current from store changes."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[GateRow, ...]] = {}
        # update() runs in the evaluator's worker thread, waiting() on the event loop.
        self._lock = threading.Lock()

    def update(self, pods: Mapping[str, Pod], changes: Mapping[str, tuple[Any, Any]] | None) -> None:
        """``changes``: pod key → (before, after) since the last update; None: rescan ``pods`` whole."""
        if changes is None:
            fresh = {key: rows for key, pod in pods.items() if pod.readiness_gates and (rows := rows_of(pod))}
            with self._lock:
                self._rows = fresh
            return
        updates = {
            key: rows_of(after) if after is not None and after.readiness_gates else ()
            for key, (_, after) in changes.items()
        }
        with self._lock:
            for key, rows in updates.items():
                if rows:
                    self._rows[key] = rows
                else:
                    self._rows.pop(key, None)

    def rows(self) -> tuple[GateRow, ...]:
        with self._lock:
            return tuple(row for key in sorted(self._rows) for row in self._rows[key])

    def waiting(self, bindings: Mapping[str, TargetGroupBinding]) -> set[str]:
        """ARNs of the target groups pods are waiting on (their gate is not True yet)."""
        with self._lock:
            waiting = [row for rows in self._rows.values() for row in rows if not row.ready]
        return set(_arns(waiting, bindings))


def _arns(rows: Iterable[GateRow], bindings: Mapping[str, TargetGroupBinding]) -> Iterable[str]:
    for row in rows:
        binding = bindings.get(f"{row.namespace}/{row.binding}")
        if binding is not None and binding.target_group_arn:
            yield binding.target_group_arn
