"""Readiness from the caches: shared by both roles."""

from __future__ import annotations

from collections.abc import Mapping

from exporter.kube.store import Store
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.state import Board


def record_caches(stores: Mapping[str, Store], metrics: SelfMetrics, board: Board) -> bool:
    """Publish which caches are synced (metric and /readyz); True once every one is."""
    waiting = []
    for name, store in stores.items():
        metrics.cache_synced.labels(name).set(1 if store.synced else 0)
        if not store.synced:
            waiting.append(f"{name} ({store.error})" if store.error else name)
    board.ready = not waiting
    board.not_ready_because = "waiting for the first list of " + ", ".join(waiting) if waiting else ""
    return not waiting
