"""In-memory caches the reflectors fill and the snapshot builder reads.

A store hands out immutable views (``view()``) that share its per-namespace dictionaries; it copies
a namespace's dictionary only the first time it changes it after a view took it. It also records
what changed since the last ``take_changes()``, so an evaluator can redo only what a change touches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from exporter.model.index import ObjectIndex, namespace_of


@dataclass
class Changes:
    """Objects changed since the last take: key → (before, after); ``full`` after a relist."""

    full: bool = False
    items: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.full or bool(self.items)


class Store:
    """Objects of one resource, keyed by ``namespace/name`` (cluster-scoped objects by name).

    ``synced`` turns true after the first complete list and stays true across relists. ``absent``
    means the API does not serve the resource (a CRD that is not installed); ``forbidden`` that RBAC
    denies listing it. Both count as synced: lbdoctor reports what it cannot see instead of waiting.

    ``last_sync`` is when the cache was last known to be current (wall clock; 0 before the first
    list): a list completed, a watch event or bookmark arrived, or a watch stream was open
    (``connected``). ``forbidden_since`` is when RBAC started to deny it. Readiness reads these to say
    when a cache has been stale or forbidden too long.
    """

    def __init__(self, name: str, changed: asyncio.Event) -> None:
        self.name = name
        self._by_namespace: dict[str, dict[str, Any]] = {}
        self._shared: set[str] = set()  # namespaces whose dict a view holds: copy before writing
        self._size = 0
        self._changed = changed
        self._changes = Changes()
        self.synced = False
        self.absent = False
        self.forbidden = False
        self.error: str | None = None
        self.last_sync = 0.0
        self.connected = False  # a watch stream is open: every change reaches the cache
        self.forbidden_since: float | None = None

    # writing ----------------------------------------------------------------------------------
    def _group(self, namespace: str) -> dict[str, Any]:
        group = self._by_namespace.get(namespace)
        if group is None:
            group = self._by_namespace[namespace] = {}
        elif namespace in self._shared:
            group = self._by_namespace[namespace] = dict(group)
            self._shared.discard(namespace)
        return group

    def replace(self, items: Iterable[tuple[str, Any]]) -> None:
        grouped: dict[str, dict[str, Any]] = {}
        size = 0
        for key, item in items:
            grouped.setdefault(namespace_of(key), {})[key] = item
            size += 1
        self._by_namespace, self._shared, self._size = grouped, set(), size
        self._changes = Changes(full=True)
        self.synced, self.absent, self.forbidden, self.error = True, False, False, None
        self.forbidden_since = None
        self.last_sync = time.time()
        self._changed.set()

    def current(self) -> None:
        """The cache is known to be current now (a watch event, a bookmark, an open stream)."""
        self.last_sync = time.time()

    def upsert(self, key: str, item: Any) -> None:
        group = self._group(namespace_of(key))
        before = group.get(key)
        group[key] = item
        self._size += before is None
        self._note(key, before, item)

    def delete(self, key: str) -> None:
        namespace = namespace_of(key)
        if key not in self._by_namespace.get(namespace, {}):
            return
        before = self._group(namespace).pop(key)
        self._size -= 1
        self._note(key, before, None)

    def _note(self, key: str, before: Any, after: Any) -> None:
        if not self._changes.full:
            first = self._changes.items.get(key)
            self._changes.items[key] = (first[0] if first else before, after)
        self._changed.set()

    def mark_absent(self) -> None:
        self._mark(absent=True)
        self.forbidden_since = None
        self.last_sync = time.time()  # known: there is nothing to cache

    def mark_forbidden(self, error: str) -> None:
        if self.forbidden_since is None:
            self.forbidden_since = time.time()
        self._mark(forbidden=True)
        self.error = error

    def _mark(self, *, absent: bool = False, forbidden: bool = False) -> None:
        if self.absent == absent and self.forbidden == forbidden and not self._size and self.synced:
            return
        self._by_namespace, self._shared, self._size = {}, set(), 0
        self.absent, self.forbidden, self.synced, self.error = absent, forbidden, True, None
        self._changes = Changes(full=True)
        self._changed.set()

    # reading ----------------------------------------------------------------------------------
    def view(self) -> ObjectIndex[Any]:
        self._shared = set(self._by_namespace)
        return ObjectIndex(dict(self._by_namespace))

    def take_changes(self) -> Changes:
        changes, self._changes = self._changes, Changes()
        return changes

    def values(self) -> list[Any]:
        return [item for group in self._by_namespace.values() for item in group.values()]

    def __len__(self) -> int:
        return self._size
