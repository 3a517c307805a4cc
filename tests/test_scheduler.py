"""The probe scheduler: per-target intervals, bounded concurrency, never two probes of one target at once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import replace

from exporter.lb.targets import ProbeTarget
from exporter.model.probe import ProbeOutcome, ProbeRequest
from exporter.model.results import ObjectRef
from exporter.scheduler import FairPool, ProbeScheduler


class Telemetry:
    def __init__(self) -> None:
        self.lags: list[float] = []
        self.results: list[bool] = []
        self.errors: list[tuple[str, str]] = []

    def probe_lag(self, seconds: float) -> None:
        self.lags.append(seconds)

    def probed(self, lb: str, success: bool) -> None:
        self.results.append(success)

    def error(self, component: str, kind: str) -> None:
        self.errors.append((component, kind))


def target(pod: str, interval: float = 0.2, protocol: str = "TCP", namespace: str = "shop") -> ProbeTarget:
    return ProbeTarget(
        owner=ObjectRef("Service", namespace, "web"),
        namespace=namespace,
        service="web",
        pod=pod,
        node="n",
        lb="nlb",
        request=ProbeRequest(protocol, "10.0.0.1", 80, timeout=1),
        interval=interval,
        healthy_threshold=2,
        unhealthy_threshold=2,
    )


async def test_each_target_on_its_interval_and_never_overlapping() -> None:
    running: dict[str, int] = {}
    overlaps = 0
    calls: dict[str, int] = {}

    async def slow_probe(request: ProbeRequest) -> ProbeOutcome:
        nonlocal overlaps
        key = str(request.port)
        running[key] = running.get(key, 0) + 1
        overlaps += running[key] > 1
        calls[key] = calls.get(key, 0) + 1
        await asyncio.sleep(0.35)  # longer than the interval
        running[key] -= 1
        return ProbeOutcome(True, None, 0.35)

    scheduler = ProbeScheduler({"TCP": slow_probe}, Telemetry(), min_interval=0.01)
    runner = asyncio.create_task(scheduler.run())
    scheduler.set_targets([target("a", interval=0.1)])
    await asyncio.sleep(1.2)
    runner.cancel()
    await scheduler.close()
    assert overlaps == 0
    assert 2 <= calls["80"] <= 5  # skipped rounds while the previous probe ran


async def test_concurrency_is_bounded() -> None:
    in_flight = peak = 0

    async def probe(request: ProbeRequest) -> ProbeOutcome:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return ProbeOutcome(True, None, 0.05)

    telemetry = Telemetry()
    scheduler = ProbeScheduler({"TCP": probe}, telemetry, concurrency=3, min_interval=0.01)
    runner = asyncio.create_task(scheduler.run())
    scheduler.set_targets([target(f"p{i}", interval=0.1, namespace=f"ns{i % 4}") for i in range(20)])
    await asyncio.sleep(0.6)
    runner.cancel()
    await scheduler.close()
    assert peak == 3
    assert len(telemetry.results) >= 20


async def test_targets_come_and_go_and_the_min_interval_floors() -> None:
    telemetry = Telemetry()

    async def probe(request: ProbeRequest) -> ProbeOutcome:
        return ProbeOutcome(False, None, 0.0)

    scheduler = ProbeScheduler({"TCP": probe}, telemetry, min_interval=0.3)
    runner = asyncio.create_task(scheduler.run())
    scheduler.set_targets([target("a", interval=0.01), target("b", interval=0.01)])
    assert {s.target.pod for s in scheduler.statuses()} == {"a", "b"}
    await asyncio.sleep(1.0)
    probes_a = len(telemetry.results)
    assert probes_a <= 2 * (1.0 / 0.3 + 1)  # floored to 0.3 s, not 0.01 s
    scheduler.set_targets([target("b", interval=0.01)])
    assert [s.target.pod for s in scheduler.statuses()] == ["b"]
    runner.cancel()
    await scheduler.close()


async def test_a_prober_bug_is_counted_and_probing_continues() -> None:
    telemetry = Telemetry()
    calls = 0

    async def buggy(request: ProbeRequest) -> ProbeOutcome:
        nonlocal calls
        calls += 1
        raise RuntimeError("bug")

    scheduler = ProbeScheduler({"TCP": buggy}, telemetry, min_interval=0.01)
    runner = asyncio.create_task(scheduler.run())
    scheduler.set_targets([target("a", interval=0.05)])
    # Each crash logs a rendered traceback, which takes a while on a busy machine: wait for three.
    for _ in range(100):
        await asyncio.sleep(0.05)
        if calls >= 3:
            break
    runner.cancel()
    await scheduler.close()
    assert calls >= 3 and telemetry.errors.count(("probe", "internal")) == calls


async def test_one_namespace_holds_at_most_a_share_of_the_pool() -> None:
    """Alone, a namespace gets half the slots: the other half waits for whoever comes next."""
    in_flight = peak = 0

    async def probe(request: ProbeRequest) -> ProbeOutcome:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return ProbeOutcome(True, None, 0.05)

    scheduler = ProbeScheduler({"TCP": probe}, Telemetry(), concurrency=10, min_interval=0.01)
    runner = asyncio.create_task(scheduler.run())
    scheduler.set_targets([target(f"p{i}", interval=0.05) for i in range(40)])
    await asyncio.sleep(0.5)
    runner.cancel()
    await scheduler.close()
    assert peak == 5


def hanging_and_healthy(hang_namespace: str, hang: int, healthy: int) -> list[ProbeTarget]:
    return [target(f"hang{i}", interval=0.2, namespace=hang_namespace) for i in range(hang)] + [
        target(f"ok{i}", interval=0.2, namespace="victim") for i in range(healthy)
    ]


async def test_a_namespace_of_hanging_targets_cannot_delay_another_namespace() -> None:
    """60 targets that hang until their timeout, in one namespace, and a pool of 10: another
    namespace's probes still start on time (they used to queue behind every hanging probe)."""
    starts: dict[str, list[float]] = {}
    loop = asyncio.get_running_loop()

    async def probe(request: ProbeRequest) -> ProbeOutcome:
        if request.ip == "10.0.0.66":
            await asyncio.sleep(request.timeout)  # a pod that accepts and never answers
            return ProbeOutcome(False, None, request.timeout)
        starts.setdefault(request.path, []).append(loop.time())
        return ProbeOutcome(True, None, 0.0)

    targets = []
    for item in hanging_and_healthy("tenant-a", 60, 4):
        if item.namespace == "tenant-a":
            item = replace(item, request=replace(item.request, ip="10.0.0.66", timeout=1.0))
        else:
            item = replace(item, request=replace(item.request, path=f"/{item.pod}"))
        targets.append(item)
    telemetry = Telemetry()
    scheduler = ProbeScheduler({"TCP": probe}, telemetry, concurrency=10, min_interval=0.01, jitter=0.0)
    runner = asyncio.create_task(scheduler.run())
    scheduler.set_targets(targets)
    await asyncio.sleep(2.0)
    runner.cancel()
    await scheduler.close()
    assert set(starts) == {"/ok0", "/ok1", "/ok2", "/ok3"}
    for times in starts.values():
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert len(times) >= 8 and max(gaps) < 0.2 + 0.1, gaps  # each on its 0.2 s interval


async def test_removed_targets_give_their_slots_back_at_once() -> None:
    """Deleting the Services of hanging targets cancels their probes, queued and running: the pool is
    free that moment, not after every queued probe has timed out in turn."""
    cancelled = 0

    async def probe(request: ProbeRequest) -> ProbeOutcome:
        nonlocal cancelled
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return ProbeOutcome(False, None, 30)

    scheduler = ProbeScheduler({"TCP": probe}, Telemetry(), concurrency=8, min_interval=0.01, jitter=0.0)
    runner = asyncio.create_task(scheduler.run())
    scheduler.set_targets([target(f"hang{i}", interval=0.05, namespace=f"ns{i % 3}") for i in range(30)])
    await asyncio.sleep(0.3)
    assert scheduler.pool.in_use == 6  # three busy namespaces, 8 // (3 + 1) slots each
    scheduler.set_targets([])
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert scheduler.pool.in_use == 0 and cancelled == 6
    assert not scheduler._tasks
    runner.cancel()
    await scheduler.close()


async def test_a_probe_cancelled_while_queued_leaves_the_pool_consistent() -> None:
    pool = FairPool(1)
    await pool.acquire("a")
    waiting = asyncio.create_task(pool.acquire("b"))
    await asyncio.sleep(0)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    pool.release("a")
    assert pool.in_use == 0
    await asyncio.wait_for(pool.acquire("c"), 0.1)
    assert pool.in_use == 1 and pool.running("c") == 1
