"""What the daemon has published: one immutable round of results, swapped in whole."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from exporter.checks.aws_round import AwsRound
from exporter.dataplane.report import DataplaneReport
from exporter.lb.plan import OwnerPlan
from exporter.lb.readiness_gates import GateRow
from exporter.lb.targets import TargetStatus
from exporter.metrics.bindings import BindingRow
from exporter.model.results import ResultSet
from exporter.model.snapshot import ClusterSnapshot


@dataclass(frozen=True)
class Published:
    """``plans`` and ``snapshot`` let the status page group results by load balancer → Service → pod."""

    results: ResultSet = field(default_factory=ResultSet)
    probes: tuple[TargetStatus, ...] = ()
    node: str | None = None
    dataplane: DataplaneReport | None = None  # this node's kube-proxy rules and health (node role)
    plans: tuple[OwnerPlan, ...] = ()
    snapshot: ClusterSnapshot | None = None
    aws: AwsRound | None = None  # the last AWS round (cluster role): target states, the published settings
    gates: tuple[GateRow, ...] = ()  # pods' load-balancer readiness gates (cluster role)
    bindings: tuple[BindingRow, ...] = ()  # TargetGroupBindings: target group known to AWS, reconcile errors


# /api/v1/targetgroups as the cluster role answers it: status, JSON document, extra headers. The argument
# says whether the request was already proxied by a standby (a standby never proxies twice).
TargetGroupsAnswer = tuple[int, dict[str, Any], dict[str, str]]
TargetGroupsSource = Callable[[bool], Awaitable[TargetGroupsAnswer]]


class Board:
    """The latest publication and readiness; written by the evaluation loop, read by the web server."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.current = Published()
        self.ready = False
        self.standby = False  # cluster role: another replica leads
        self.not_ready_because = "caches not synced yet"
        self.targetgroups: TargetGroupsSource | None = None  # cluster role: leader's or proxied to the leader

    def publish(self, published: Published) -> None:
        self.current = published
