"""The node agent's dataplane loop: every interval, ask kube-proxy how it is, read its rules, compare.

Reading is asynchronous (subprocesses, HTTP); parsing and comparing run in a worker thread, so the
event loop keeps serving probes and scrapes. Each round replaces ``report`` whole and sets
``changed``. Findings keep the time they were first seen across rounds, so the check can tell
kube-proxy's normal lag (shorter than the grace period) from rules that stay wrong.

Logs only say when the picture changes (state, reader failure, findings appearing or clearing), so a
node without permission to read the rules logs one line, not one per round.
"""

from __future__ import annotations

import asyncio
import gc
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import structlog

from exporter.dataplane.analysis import IPVS_DETAIL, Analysis, analyse_iptables, analyse_nft
from exporter.dataplane.compare import FindingKey
from exporter.dataplane.dump import DumpReader
from exporter.dataplane.expected import IPV4, IPV6, cluster_ips, expected_state, is_proxied
from exporter.dataplane.health import check_health
from exporter.dataplane.readers import IPTABLES, IPVS, DataplaneReader, RawRules, RulesReader, Runner
from exporter.dataplane.report import (
    DataplaneReport,
    KubeProxyHealth,
    RulesReport,
    RulesState,
    TrackedFinding,
)
from exporter.model.snapshot import ClusterSnapshot

log = structlog.get_logger("lbdoctor.dataplane")


class DataplaneTelemetry(Protocol):
    def error(self, component: str, kind: str) -> None: ...


@dataclass(frozen=True)
class MonitorConfig:
    node: str
    mode: str = "auto"  # auto | iptables | nftables | ipvs | off
    interval: float = 30.0
    grace: float = 30.0
    healthz_url: str | None = "http://127.0.0.1:10256/healthz"
    metrics_url: str | None = "http://127.0.0.1:10249/metrics"
    timeout: float = 30.0
    command_prefix: str = ""  # e.g. "nsenter --net=/proc/1/ns/net" when not in the host network
    rules_dir: str = ""  # read the rules-dump sidecar's file there instead of running the readers


def families_of(snapshot: ClusterSnapshot) -> tuple[str, ...]:
    """IPv4 always (the common case, and kube-proxy's chains are there even without Services); IPv6 when
    some proxied Service has an IPv6 ClusterIP."""
    ipv6 = any(":" in ip for s in snapshot.services.values() if is_proxied(s) for ip in cluster_ips(s))
    return (IPV4, IPV6) if ipv6 else (IPV4,)


def analyse_raw(raw: RawRules, snapshot: ClusterSnapshot, node: str) -> Analysis:
    """Parse and compare one read. Pure and CPU-bound: the monitor runs it in a worker thread."""
    if raw.mode is None:
        if raw.failure is not None:
            return Analysis(RulesState.UNREADABLE, str(raw.failure), failure=raw.failure.kind, notes=raw.notes)
        return Analysis(
            RulesState.NOT_FOUND,
            f"no kube-proxy rules in iptables (nft or legacy backend) or nftables (ran: {'; '.join(raw.commands)})",
            notes=raw.notes,
        )
    if raw.mode == IPVS:
        return Analysis(RulesState.UNSUPPORTED, IPVS_DETAIL, notes=raw.notes)
    expected = expected_state(snapshot, node)
    if raw.mode == IPTABLES:
        texts: dict[str | None, str] = {
            family: data.decode("utf-8", "replace") for family, data in raw.iptables.items()
        }
        found = analyse_iptables(expected, texts, source=f"iptables-save ({raw.backend} backend)")
    else:
        found = analyse_nft(expected, [data.decode("utf-8", "replace") for data in raw.nft.values()])
    return Analysis(
        found.state,
        found.detail,
        found.findings,
        found.families,
        found.ports,
        found.endpoints,
        found.lines,
        found.unknown,
        (*raw.notes, *found.notes),
        found.failure,
    )


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a round is analysed.

    The analysis makes a few hundred thousand short-lived objects without reference cycles (freed by
    reference counting), yet their allocation triggers full collections, which walk every object of
    the process - the whole cluster snapshot - holding the GIL for 100 ms and more on a large cluster,
    and the event loop waits that long. Paused, the round is also about a fifth faster.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def analyse_in_worker(raw: RawRules, snapshot: ClusterSnapshot, node: str) -> Analysis:
    """What the worker thread runs each round."""
    with cyclic_gc_paused():
        return analyse_raw(raw, snapshot, node)


class DataplaneMonitor:
    def __init__(
        self,
        config: MonitorConfig,
        telemetry: DataplaneTelemetry,
        snapshot: Callable[[], ClusterSnapshot | None],
        *,
        reader: RulesReader | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._telemetry = telemetry
        self._snapshot = snapshot
        mode = config.mode if config.mode != "off" else "auto"
        self._reader: RulesReader = reader or (
            DumpReader(config.rules_dir, mode, config.timeout, clock, first_dump_wait=config.timeout + config.interval)
            if config.rules_dir
            else DataplaneReader(Runner(shlex.split(config.command_prefix), timeout=config.timeout), mode=mode)
        )
        self._clock = clock
        self._first_seen: dict[FindingKey, float] = {}
        self._pending: tuple[float, float] | None = None  # (kube-proxy's last sync, when lbdoctor first saw it late)
        self._logged: tuple[str, ...] | None = None
        disabled = config.mode == "off"
        self.report = DataplaneReport(
            RulesReport(RulesState.DISABLED if disabled else RulesState.PENDING, "first read due"),
            grace=config.grace,
        )
        self.changed = asyncio.Event()

    async def run(self) -> None:
        """Forever: one round every interval."""
        if self.config.mode == "off":
            self.report = DataplaneReport(RulesReport(RulesState.DISABLED, "kube_proxy_mode: off"), grace=0)
            self.changed.set()
            await asyncio.Event().wait()  # nothing to do, and a returning task would be restarted
        async with aiohttp.ClientSession() as session:
            while True:
                report = await self.round(session)
                waiting = report.rules.state is RulesState.PENDING  # for caches: look again soon
                await asyncio.sleep(min(self.config.interval, 1.0) if waiting else self.config.interval)

    async def round(self, session: aiohttp.ClientSession) -> DataplaneReport:
        started = time.perf_counter()
        now = self._clock()
        config = self.config
        health: KubeProxyHealth | None = None
        if config.healthz_url or config.metrics_url:
            health = await check_health(
                session,
                config.healthz_url,
                config.metrics_url,
                timeout=min(config.timeout, 5.0),
                want_mode=config.mode == "auto",
                clock=self._clock,
            )
        snapshot = self._snapshot()
        if snapshot is None:
            waiting = "waiting for lbdoctor's Kubernetes caches to sync (or to be in sync again)"
            rules = RulesReport(RulesState.PENDING, waiting, read_at=now)
        else:
            families = await asyncio.to_thread(families_of, snapshot)  # a walk over every Service: not on the loop
            raw = await self._reader.read(families, health.proxy_mode if health else None)
            try:
                analysis = await asyncio.to_thread(analyse_in_worker, raw, snapshot, config.node)
            except Exception:  # a parser bug must not stop the agent: say so and keep going
                log.exception("kube-proxy rules could not be analysed")
                self._telemetry.error("dataplane", "internal")
                analysis = Analysis(RulesState.UNREADABLE, "internal error while analysing the rules (see logs)")
            rules = self._track(analysis, raw, raw.taken_at or now, time.perf_counter() - started)
        self.report = DataplaneReport(rules, health, config.grace, self._sync_pending_since(health, now))
        self._log(self.report, now)
        self.changed.set()
        return self.report

    def _track(self, analysis: Analysis, raw: RawRules, now: float, seconds: float) -> RulesReport:
        if raw.failure is not None and analysis.state is RulesState.UNREADABLE:
            self._telemetry.error("dataplane", raw.failure.kind)
        elif analysis.failure is not None:
            self._telemetry.error("dataplane", analysis.failure)
        if analysis.unknown:
            self._telemetry.error("dataplane", "unparsed_lines")
        tracked: tuple[TrackedFinding, ...] = ()
        if analysis.state is RulesState.COMPARED:
            first_seen = {f.key: self._first_seen.get(f.key, now) for f in analysis.findings}
            self._first_seen = first_seen
            tracked = tuple(TrackedFinding(f, first_seen[f.key]) for f in analysis.findings)
        # Other states keep what was seen before: one failed read must not restart every grace period.
        return RulesReport(
            state=analysis.state,
            detail=analysis.detail,
            mode=raw.mode,
            backend=raw.backend,
            families=analysis.families,
            findings=tracked,
            ports=analysis.ports,
            endpoints=analysis.endpoints,
            lines=analysis.lines,
            unknown=analysis.unknown,
            read_at=now,
            seconds=seconds,
            notes=analysis.notes,
            failure=analysis.failure,
        )

    def _sync_pending_since(self, health: KubeProxyHealth | None, now: float) -> float | None:
        """Since when kube-proxy has had queued changes and no successful sync (None: it is caught up).

        Seen once, a pending change is normal (kube-proxy syncs within its minSyncPeriod); it counts only
        while lbdoctor keeps seeing the same last sync, so the clock starts at lbdoctor's first sight."""
        if health is None or health.last_sync is None or health.last_queued is None:
            self._pending = None
            return None
        if health.last_queued <= health.last_sync:
            self._pending = None
            return None
        if self._pending is None or self._pending[0] != health.last_sync:
            self._pending = (health.last_sync, now)
        return self._pending[1]

    def _log(self, report: DataplaneReport, now: float) -> None:
        rules = report.rules
        due = len(report.due(now))
        health = report.health
        health_state = (
            "unchecked"
            if health is None or not health.healthz_url
            else "unreachable"
            if not health.reachable
            else "healthy"
            if health.healthy
            else "unhealthy"
        )
        state = (rules.state.value, rules.failure or "", rules.mode or "", str(bool(due)), health_state)
        if state == self._logged:
            return
        self._logged = state
        fields = {"node": self.config.node, "state": rules.state.value, "mode": rules.mode, "detail": rules.detail}
        if rules.state is RulesState.UNREADABLE:
            log.warning("kube-proxy rules unreadable", **fields)
        elif rules.state is RulesState.COMPARED and due:
            log.warning("kube-proxy rules differ from the API", problems=due, **fields)
        else:
            log.info("kube-proxy rules", problems=due, kube_proxy_health=health_state, **fields)
