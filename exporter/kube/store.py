"""In-memory caches the reflectors fill and the snapshot builder reads."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


class Store:
    """Objects of one resource, keyed by ``namespace/name``.

    ``synced`` turns true after the first complete list and stays true across relists: the data
    is merely older while a watch reconnects. ``absent`` means the API does not serve the resource.
    """

    def __init__(self, name: str, changed: asyncio.Event) -> None:
        self.name = name
        self._items: dict[str, Any] = {}
        self._changed = changed
        self.synced = False
        self.absent = False
        self.error: str | None = None

    def replace(self, items: Iterable[tuple[str, Any]]) -> None:
        self._items = dict(items)
        self.synced = True
        self.absent = False
        self.error = None
        self._changed.set()

    def upsert(self, key: str, item: Any) -> None:
        self._items[key] = item
        self._changed.set()

    def delete(self, key: str) -> None:
        if self._items.pop(key, None) is not None:
            self._changed.set()

    def mark_absent(self) -> None:
        changed = not self.absent or bool(self._items)
        self._items = {}
        self.absent = True
        self.synced = True
        self.error = None
        if changed:
            self._changed.set()

    def values(self) -> list[Any]:
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)
