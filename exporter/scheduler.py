"""Probe every target on its own interval, as the load balancer does, and keep the LB's verdict.

One dispatcher task walks a heap of due times; each probe runs in its own task once it holds a slot
of the ``FairPool`` (bounded concurrency, shared fairly between namespaces), and a target is never
probed twice at once: a probe that outlives its interval makes the next round skip. A removed
target's probe is cancelled at once, queued or running. Per-target state is replaced, never
mutated, so readers can take a consistent tuple of statuses at any moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import time
from collections import Counter, deque
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


class FairPool:
    """Probe slots shared between tenants (namespaces), so one tenant cannot starve another.

    A tenant holds at most ``size // (busy + 1)`` slots, ``busy`` being the number of tenants with a
    probe running or waiting: whatever one tenant's probes do (hang until their timeout, say), a
    slot is left for a tenant that has none running, and its probe starts at once instead of queueing
    behind hundreds of someone else's. Free slots go to the waiting tenants in turn (round robin),
    each tenant's probes in the order they became due. A tenant's own slow targets therefore delay
    only that tenant's probes.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._running: Counter[str] = Counter()
        self._in_use = 0
        # Insertion order is the round-robin order: a tenant served goes to the back.
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    def share(self) -> int:
        """The most slots one tenant may hold right now."""
        busy = len(self._running.keys() | self._waiting.keys())
        return max(1, self.size // (busy + 1))

    def running(self, tenant: str) -> int:
        return self._running[tenant]

    @property
    def in_use(self) -> int:
        return self._in_use

    async def acquire(self, tenant: str) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(tenant, deque()).append(waiter)
        self._grant()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(tenant)  # granted, but cancelled before it could run
            else:
                queue = self._waiting.get(tenant)
                if queue is not None and waiter in queue:
                    queue.remove(waiter)
                    if not queue:
                        del self._waiting[tenant]
            raise

    def release(self, tenant: str) -> None:
        self._in_use -= 1
        self._running[tenant] -= 1
        if self._running[tenant] <= 0:
            del self._running[tenant]
        self._grant()

    def _grant(self) -> None:
        while self._in_use < self.size and self._waiting:
            share = self.share()
            chosen = next((t for t in self._waiting if self._running[t] < share), None)
            if chosen is None:
                return  # every waiting tenant holds its share; the free slots stay for the others
            queue = self._waiting.pop(chosen)
            waiter = queue.popleft()
            if queue:
                self._waiting[chosen] = queue  # to the back of the round
            if waiter.done():
                continue  # cancelled while waiting; its task removes nothing more
            self._running[chosen] += 1
            self._in_use += 1
            waiter.set_result(None)


class _Entry:
    __slots__ = ("due", "in_flight", "seq", "status", "task")

    def __init__(self, status: TargetStatus, due: float, seq: int) -> None:
        self.status = status
        self.due = due
        self.seq = seq  # heap items carrying another seq are stale
        self.in_flight = False
        self.task: asyncio.Task[None] | None = None  # the probe queued or running, if any


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
        self.pool = FairPool(concurrency)
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
        wanted = {target.key: target for target in targets}
        loop = asyncio.get_running_loop()
        now = loop.time()
        changed = False
        for key in [key for key in self._entries if key not in wanted]:
            entry = self._entries.pop(key)
            if entry.task is not None:
                entry.task.cancel()  # queued or running: its slot goes to someone else now
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
        entry.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _probe(self, key: Key, entry: _Entry, due: float) -> None:
        loop = asyncio.get_running_loop()
        target = entry.status.target
        tenant = target.namespace
        try:
            await self.pool.acquire(tenant)
            try:
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
            finally:
                self.pool.release(tenant)
        except Exception:  # a bug in a prober must not stop probing
            self._telemetry.error("probe", "internal")
            log.exception("probe crashed", **_log_labels(target))
            return
        finally:
            entry.in_flight = False
            entry.task = None
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
    namespace, service, pod, _node, lb, port, path, owner = target.labels
    return {
        "namespace": namespace,
        "service": service,
        "pod": pod,
        "lb": lb,
        "port": port,
        "path": path,
        "owner": owner,
    }
