"""A small asyncio token bucket: lbdoctor's share of an AWS API bucket.

ELBv2 Describe* calls of the whole account and Region draw on one bucket (40 tokens; the AWS guide's
example refills it at 10 a second), shared with the AWS Load Balancer Controller and the console.
lbdoctor keeps well below it on the client side, so a throttled controller is never lbdoctor's doing.

The clock and the sleep are injectable so tests can drive the bucket without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

_EPSILON = 1e-9


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``acquire`` waits for a token.

    Waiters are served in arrival order (the lock), so a burst of calls spreads out evenly instead of
    all retrying at once.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = asyncio.Lock()
        self.granted = 0
        self.waited = 0.0  # seconds acquirers spent waiting for a token, in total

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            # The tolerance keeps float rounding from turning into an endless series of tiny sleeps.
            while self._tokens < 1 - _EPSILON:
                pause = max((1 - self._tokens) / self.rate, _EPSILON)
                await self._sleep(pause)
                self.waited += pause
                self._refill()
            self._tokens -= 1
            self.granted += 1

    def available(self) -> float:
        """Tokens in the bucket now (after refilling)."""
        self._refill()
        return self._tokens

    def seconds_for(self, calls: int) -> float:
        """Least time ``calls`` acquisitions take from a full bucket (for planning a round)."""
        return max(calls - self.burst, 0) / self.rate
