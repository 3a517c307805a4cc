"""An immutable mapping of objects keyed ``namespace/name`` and grouped by namespace.

Snapshots of a large cluster must be cheap to take and cheap to query by namespace. The store
that fills these hands out its per-namespace dictionaries and copies one only when it changes it
after a snapshot took it (copy on write), so a snapshot costs O(namespaces), not O(objects).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol, TypeVar


class HasMeta(Protocol):
    @property
    def meta(self) -> _Meta: ...


class _Meta(Protocol):
    @property
    def namespace(self) -> str: ...

    @property
    def key(self) -> str: ...


T = TypeVar("T")
M = TypeVar("M", bound=HasMeta)


def namespace_of(key: str) -> str:
    """``ns/name`` → ``ns``; a cluster-scoped ``name`` → ``""``."""
    return key.rpartition("/")[0]


class ObjectIndex(Mapping[str, T]):
    __slots__ = ("_by_namespace", "_size")

    def __init__(self, by_namespace: Mapping[str, Mapping[str, T]]) -> None:
        self._by_namespace = by_namespace
        self._size = sum(len(group) for group in by_namespace.values())

    @classmethod
    def of(cls, items: Iterable[M]) -> ObjectIndex[M]:
        grouped: dict[str, dict[str, M]] = {}
        for item in items:
            grouped.setdefault(item.meta.namespace, {})[item.meta.key] = item
        return ObjectIndex(grouped)

    def __getitem__(self, key: str) -> T:
        group = self._by_namespace.get(namespace_of(key))
        if group is None:
            raise KeyError(key)
        return group[key]

    def __iter__(self) -> Iterator[str]:
        for group in self._by_namespace.values():
            yield from group

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._by_namespace.get(namespace_of(key), {})

    def in_namespace(self, namespace: str) -> Mapping[str, T]:
        group: Mapping[str, T] = self._by_namespace.get(namespace, {})
        return group

    @property
    def namespaces(self) -> Iterable[str]:
        return self._by_namespace.keys()
