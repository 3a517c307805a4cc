"""Jittered exponential backoff: the one retry policy of every loop that retries after a failure.

A fleet of node agents must not reconnect in lockstep after an API server restart, and a failure that
repeats (a list answered 410 Gone forever, a 500 that does not clear) must slow its retries down
instead of spinning. Callers ``reset()`` on the first sign of success, so the next failure starts
short again instead of waiting as long as the last outage did.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

# Seconds; the last one repeats. Doubling from half a second, as client-go's reflector backs off.
DEFAULT_DELAYS: tuple[float, ...] = (0.5, 1, 2, 4, 8, 16, 30)


class Backoff:
    """Delays from ``delays`` (the last one repeats), each multiplied by a random factor in
    [1 - jitter, 1 + jitter]; ``at_least`` (a Retry-After) raises a delay, never lowers it."""

    def __init__(self, delays: Sequence[float] = DEFAULT_DELAYS, jitter: float = 0.2) -> None:
        if not delays:
            raise ValueError("backoff needs at least one delay")
        self._delays = tuple(delays)
        self._jitter = jitter
        self.failures = 0  # consecutive failures since the last reset

    def next(self, at_least: float | None = None) -> float:
        """The delay before the next attempt; counts one more failure."""
        delay = self._delays[min(self.failures, len(self._delays) - 1)]
        self.failures += 1
        delay *= random.uniform(1 - self._jitter, 1 + self._jitter)
        return max(delay, at_least) if at_least is not None else delay

    def reset(self) -> None:
        self.failures = 0
