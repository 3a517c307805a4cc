"""What the node role's checks read: the snapshot, the LB plan, this node's targets and probe statuses."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from exporter.dataplane.report import DataplaneReport
from exporter.lb.plan import LbPlan
from exporter.lb.targets import NodeTargets, TargetStatus
from exporter.model.results import ObjectRef
from exporter.model.snapshot import ClusterSnapshot


@dataclass(frozen=True)
class NodeContext:
    node: str
    snapshot: ClusterSnapshot
    plan: LbPlan
    targets: NodeTargets
    statuses: tuple[TargetStatus, ...]
    now: float = 0.0  # wall-clock time of the evaluation (checks never read the clock themselves)
    dataplane: DataplaneReport | None = None  # this node's kube-proxy rules and health; None: not read

    @cached_property
    def local_owners(self) -> frozenset[ObjectRef]:
        """Services/Ingresses with at least one pod on this node: the objects this agent speaks for."""
        return frozenset(placement.backend.owner for placement in self.targets.placements)
