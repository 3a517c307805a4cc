"""The client-side token bucket, driven by a fake clock: it never lets more through than burst + rate x time."""

from __future__ import annotations

import asyncio

import pytest

from exporter.aws.limiter import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@pytest.mark.parametrize(("rate", "burst"), [(5.0, 10), (10.0, 40), (1.0, 1)])
async def test_no_window_exceeds_the_budget(rate: float, burst: int) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, burst, clock=clock, sleep=clock.sleep)
    granted: list[float] = []

    async def caller() -> None:
        for _ in range(25):
            await bucket.acquire()
            granted.append(clock.now)

    await asyncio.gather(*(caller() for _ in range(4)))
    assert len(granted) == 100 == bucket.granted
    for start in granted:
        for width in (1.0, 5.0):
            inside = sum(1 for t in granted if start <= t < start + width)
            assert inside <= burst + rate * width + 1e-9
    # and it is not slower than it has to be
    assert granted[-1] == pytest.approx(bucket.seconds_for(100))


async def test_an_idle_bucket_refills_only_up_to_its_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, 3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        await bucket.acquire()
    assert clock.now == 0.0
    clock.now = 1000.0
    for _ in range(4):
        await bucket.acquire()
    assert clock.now == pytest.approx(1000.5)


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="positive rate"):
        TokenBucket(0, 1)
