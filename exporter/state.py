"""What the daemon has published: one immutable round of results, swapped in whole."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.dataplane.report import DataplaneReport
from exporter.lb.targets import TargetStatus
from exporter.model.results import ResultSet


@dataclass(frozen=True)
class Published:
    results: ResultSet = field(default_factory=ResultSet)
    probes: tuple[TargetStatus, ...] = ()
    node: str | None = None
    dataplane: DataplaneReport | None = None  # this node's kube-proxy rules and health (node role)


class Board:
    """The latest publication and readiness; written by the evaluation loop, read by the web server."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.current = Published()
        self.ready = False
        self.not_ready_because = "caches not synced yet"

    def publish(self, published: Published) -> None:
        self.current = published
