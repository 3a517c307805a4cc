"""Readiness from the caches: shared by both roles.

A role is ready once every cache has been listed and none has been stale or forbidden longer than
``kube_stale_after_seconds``: a resource the API server keeps failing (500, 403) for minutes must
not leave ``/readyz`` at 200 while the checks read a stale or empty cache. A periodic task
(``keep_readiness``) re-assesses this even when nothing changes, since a failing API server changes
nothing, and publishes each cache's last sync time as a metric.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from exporter.kube.store import Store
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.state import Board


def _age(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def assess(stores: Mapping[str, Store], now: float, stale_after: float) -> tuple[bool, bool, str]:
    """(synced, ready, why not ready): synced once every cache was listed; ready when also none has been
    stale or forbidden longer than ``stale_after`` seconds."""
    waiting, stale = [], []
    for name, store in stores.items():
        if not store.synced:
            waiting.append(f"{name} ({store.error})" if store.error else name)
        elif store.forbidden and store.forbidden_since is not None and now - store.forbidden_since > stale_after:
            stale.append(f"{name} forbidden for {_age(now - store.forbidden_since)} ({store.error})")
        elif not (store.absent or store.forbidden or store.connected) and now - store.last_sync > stale_after:
            why = f": {store.error}" if store.error else ""
            stale.append(f"{name} not in sync with the API server for {_age(now - store.last_sync)}{why}")
    if waiting:
        return False, False, "waiting for the first list of " + ", ".join(waiting)
    if stale:
        return True, False, "stale caches: " + "; ".join(stale)
    return True, True, ""


def record_caches(stores: Mapping[str, Store], metrics: SelfMetrics, board: Board, stale_after: float) -> bool:
    """Publish which caches are synced and when they last were (metrics, /readyz); True once every cache
    has been listed (stale or not)."""
    now = time.time()
    for name, store in stores.items():
        if store.connected or store.absent:
            store.current()  # an open watch delivers every change (and a resource not served has none)
        metrics.cache_synced.labels(name).set(1 if store.synced else 0)
        if store.last_sync:
            metrics.last_sync.labels(name).set(store.last_sync)
    synced, ready, because = assess(stores, now, stale_after)
    board.ready, board.not_ready_because = ready, because
    return synced


async def keep_readiness(
    stores: Mapping[str, Store], metrics: SelfMetrics, board: Board, stale_after: float, every: float = 1.0
) -> None:
    """Forever: re-assess readiness, as time alone can make a cache stale."""
    while True:
        record_caches(stores, metrics, board, stale_after)
        await asyncio.sleep(every)
