"""Probe every target on its own interval, as the load balancer does, and keep the LB's verdict.

One dispatcher task walks a heap of due times; each probe runs in its own task under a semaphore
(bounded concurrency), and a target is never probed twice at once: a probe that outlives its
interval makes the next round skip. Per-target state is replaced, never mutated, so readers can
take a consistent tuple of statuses at any moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Protocol

import structlog

from exporter.lb.targets import ProbeTarget, TargetStatus
from exporter.lb.thresholds import LbState
from exporter.model.probe import ProbeOutcome
from exporter.model.results import Reason
from exporter.probes import ProbeFn

log = structlog.get_logger("lbdoctor.probe")

Key = tuple[str, ...]
MAX_FLIPS_KEPT = 16


class SchedulerTelemetry(Protocol):
    def probe_lag(self, seconds: float) -> None: ...
    def probed(self, lb: str, success: bool) -> None: ...
    def error(self, component: str, kind: str) -> None: ...


class _Entry:
    __slots__ = ("due", "in_flight", "seq", "status")

    def __init__(self, status: TargetStatus, due: float, seq: int) -> None:
        self.status = status
        self.due = due
        self.seq = seq  # heap items carrying another seq are stale
        self.in_flight = False


class ProbeScheduler:
    def __init__(
        self,
        probers: Mapping[str, ProbeFn],
        telemetry: SchedulerTelemetry,
        *,
        concurrency: int = 200,
        min_interval: float = 5.0,
        jitter: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._probers = probers
        self._telemetry = telemetry
        self._min_interval = min_interval
        self._jitter = jitter
        self._clock = clock
        self._semaphore = asyncio.Semaphore(concurrency)
        self._entries: dict[Key, _Entry] = {}
        self._heap: list[tuple[float, int, Key]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()  # set whenever a status or the target set changes

    # targets ----------------------------------------------------------------------------------
    def interval_of(self, target: ProbeTarget) -> float:
        return max(target.interval, self._min_interval)

    def set_targets(self, targets: Iterable[ProbeTarget]) -> None:
        wanted = {target.labels: target for target in targets}
        loop = asyncio.get_running_loop()
        now = loop.time()
        changed = False
        for key in [key for key in self._entries if key not in wanted]:
            entry = self._entries.pop(key)
            log.info("target removed", **_log_labels(entry.status.target))
            changed = True
        for key, target in wanted.items():
            existing = self._entries.get(key)
            if existing is None:
                # Spread first probes over one interval so a restart does not probe everything at once.
                entry = _Entry(TargetStatus(target), now + random.uniform(0, self.interval_of(target)), next(self._seq))
                self._entries[key] = entry
                if target.supported:
                    heapq.heappush(self._heap, (entry.due, entry.seq, key))
                log.info("target added", **_log_labels(target), interval=self.interval_of(target))
                changed = True
            elif existing.status.target != target:
                entry = existing
                old = entry.status.target
                entry.status = replace(entry.status, target=target)
                if self.interval_of(old) != self.interval_of(target) or old.supported != target.supported:
                    entry.seq = next(self._seq)
                    entry.due = now + random.uniform(0, self.interval_of(target))
                    if target.supported:
                        heapq.heappush(self._heap, (entry.due, entry.seq, key))
                changed = True
        if changed:
            self._wake.set()
            self.changed.set()

    def statuses(self) -> tuple[TargetStatus, ...]:
        return tuple(entry.status for entry in self._entries.values())

    # running ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Forever: start each due probe, then sleep until the next one is due or targets change."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._heap and self._heap[0][0] <= now:
                due, seq, key = heapq.heappop(self._heap)
                entry = self._entries.get(key)
                if entry is None or entry.seq != seq:
                    continue
                self._dispatch(key, entry, due, now)
            self._wake.clear()
            delay = self._heap[0][0] - loop.time() if self._heap else None
            if delay is None or delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    def _dispatch(self, key: Key, entry: _Entry, due: float, now: float) -> None:
        interval = self.interval_of(entry.status.target)
        next_due = due + interval * (1 + random.uniform(-self._jitter, self._jitter))
        if next_due <= now:  # fell behind (a stalled loop, a long suspend): do not burst to catch up
            next_due = now + random.uniform(0, interval * self._jitter)
        entry.due = next_due
        heapq.heappush(self._heap, (next_due, entry.seq, key))
        if entry.in_flight:
            return  # the previous probe is still running: never two at once
        entry.in_flight = True
        task = asyncio.create_task(self._probe(key, entry, due), name=f"probe {'/'.join(key[:3])}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _probe(self, key: Key, entry: _Entry, due: float) -> None:
        loop = asyncio.get_running_loop()
        target = entry.status.target
        try:
            async with self._semaphore:
                self._telemetry.probe_lag(max(loop.time() - due, 0.0))
                started = self._clock()
                prober = self._probers.get(target.request.kind)
                if prober is None:
                    outcome = ProbeOutcome(
                        success=False,
                        reason=Reason.UNSUPPORTED_HEALTH_CHECK,
                        duration=0.0,
                        detail=f"no prober for protocol {target.request.protocol}",
                    )
                else:
                    outcome = await prober(target.request)
        except Exception:  # a bug in a prober must not stop probing
            self._telemetry.error("probe", "internal")
            log.exception("probe crashed", **_log_labels(target))
            return
        finally:
            entry.in_flight = False
        if self._entries.get(key) is not entry:
            return  # the target went away while we probed it
        self._record(entry, outcome, started)

    def _record(self, entry: _Entry, outcome: ProbeOutcome, started: float) -> None:
        status = entry.status
        target = status.target
        health = status.health.after(outcome.success, target.thresholds)
        flips = status.flips
        if health.transitions != status.health.transitions:
            flips = (*flips[-(MAX_FLIPS_KEPT - 1) :], started)
        entry.status = TargetStatus(
            target=target,
            outcome=outcome,
            probed_at=started,
            health=health,
            last_failure=status.last_failure if outcome.success else outcome,
            flips=flips,
        )
        self._telemetry.probed(target.lb, outcome.success)
        if health.state is not status.health.state:
            level = log.warning if health.state is LbState.UNHEALTHY else log.info
            level(
                "predicted load balancer state changed",
                **_log_labels(target),
                previous=status.health.state.value,
                state=health.state.value,
                reason=outcome.reason.value if outcome.reason else None,
                detail=outcome.detail,
            )
        self.changed.set()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _log_labels(target: ProbeTarget) -> dict[str, str]:
    namespace, service, pod, _node, lb, port, path = target.labels
    return {"namespace": namespace, "service": service, "pod": pod, "lb": lb, "port": port, "path": path}
