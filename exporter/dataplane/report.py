"""What the dataplane adapters hand to the ``kube_proxy`` check: plain, immutable data. No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from exporter.dataplane.compare import Finding


class RulesState(enum.StrEnum):
    COMPARED = "compared"  # rules read and compared with the API
    PENDING = "pending"  # not read yet, or lbdoctor's own caches are not synced yet
    UNREADABLE = "unreadable"  # a reader failed (binary missing, no permission, exit code, truncated)
    NOT_FOUND = "not_found"  # readable, but no kube-proxy rules in any backend
    UNSUPPORTED = "unsupported"  # IPVS mode: detected, not compared
    OTHER_NODE = "other_node"  # the rules belong to a different node (offline dumps)
    DISABLED = "disabled"  # kube_proxy_mode: off


@dataclass(frozen=True, slots=True)
class TrackedFinding:
    """A finding and when it was first seen; it is reported once it outlives the grace period."""

    finding: Finding
    first_seen: float


@dataclass(frozen=True)
class RulesReport:
    state: RulesState
    detail: str = ""  # one line: why unreadable or unsupported, or what was compared
    mode: str | None = None  # iptables | nftables | ipvs
    backend: str | None = None  # nft | legacy (iptables mode)
    families: tuple[str, ...] = ()  # IP families compared
    findings: tuple[TrackedFinding, ...] = ()
    ports: int = 0  # Service ports compared
    endpoints: int = 0  # endpoint rules looked for
    lines: int = 0  # lines (iptables-save) or objects (nft JSON) read
    unknown: int = 0  # of which not understood
    read_at: float = 0.0  # wall-clock time of the read
    seconds: float = 0.0  # read, parse and compare
    notes: tuple[str, ...] = ()  # things a person should know (a table not read, rules in both backends)
    failure: str | None = None  # UNREADABLE: missing_binary | permission_denied | failed | timeout | truncated


@dataclass(frozen=True)
class KubeProxyHealth:
    """kube-proxy's own view: /healthz on 10256 and its sync metrics on 10249 (docs/kube-proxy.md §9)."""

    checked_at: float
    healthz_url: str | None
    reachable: bool = False  # /healthz answered at all
    healthy: bool | None = None  # 200 → True, 503 → False, no answer → None
    status_code: int | None = None
    detail: str = ""  # connection refused, the 503 body's gist, …
    node_eligible: bool | None = None  # False: the node is being deleted or drained (healthz 503 on purpose)
    metrics_url: str | None = None
    metrics_detail: str = ""  # why the sync metrics are unknown
    last_sync: float | None = None  # kubeproxy_sync_proxy_rules_last_timestamp_seconds (oldest family)
    last_queued: float | None = None  # …_last_queued_timestamp_seconds
    sync_lag: float | None = None  # max over families of queued - last (0 when caught up)
    proxy_mode: str | None = None  # GET /proxyMode


@dataclass(frozen=True)
class DataplaneReport:
    rules: RulesReport
    health: KubeProxyHealth | None = None
    grace: float = 30.0  # findings younger than this are kube-proxy's normal lag, not reported
    # When lbdoctor first saw kube-proxy with queued changes and no sync since (None: caught up).
    sync_pending_since: float | None = None
    # When the round that made this report ran (wall clock; 0: unknown). The kube_proxy check judges the report
    # as of then, so its verdicts change with the report, not with the clock.
    at: float = 0.0

    def due(self, now: float) -> tuple[TrackedFinding, ...]:
        """Findings that outlived the grace period: kube-proxy had time to fix them and did not."""
        return tuple(t for t in self.rules.findings if now - t.first_seen >= self.grace)

    def settling(self, now: float) -> int:
        return sum(1 for t in self.rules.findings if now - t.first_seen < self.grace)
