"""What the daemon has published: one immutable round of results, swapped in whole."""

from __future__ import annotations

from dataclasses import dataclass, field

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


class Board:
    """The latest publication and readiness; written by the evaluation loop, read by the web server."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.current = Published()
        self.ready = False
        self.standby = False  # cluster role: another replica leads
        self.not_ready_because = "caches not synced yet"

    def publish(self, published: Published) -> None:
        self.current = published
