"""The probe scheduler: per-target intervals, bounded concurrency, never two probes of one target at once."""

from __future__ import annotations

import asyncio

from exporter.lb.targets import ProbeTarget
from exporter.model.probe import ProbeOutcome, ProbeRequest
from exporter.model.results import ObjectRef
from exporter.scheduler import ProbeScheduler


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


def target(pod: str, interval: float = 0.2, protocol: str = "TCP") -> ProbeTarget:
    return ProbeTarget(
        owner=ObjectRef("Service", "shop", "web"),
        namespace="shop",
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
    scheduler.set_targets([target(f"p{i}", interval=0.1) for i in range(20)])
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
    await asyncio.sleep(0.4)
    runner.cancel()
    await scheduler.close()
    assert calls >= 3 and telemetry.errors.count(("probe", "internal")) == calls
