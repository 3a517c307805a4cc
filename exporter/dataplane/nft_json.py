"""Parse ``nft -j list table {ip,ip6} kube-proxy`` (libnftables-json(5), reference kube-proxy.md §2.5). Pure.

Keeps what the comparison needs: chain names, the elements of sets and verdict maps, and each
chain's rules as their expression lists. Tolerant: objects of unknown kinds are counted, several
JSON documents one after another (two ``nft -j`` runs into one file) are all read, and text that
is not JSON (a truncated capture) yields an ``error`` instead of an exception.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 5
Key = tuple[str | int, ...]  # an element key: ("10.96.0.10", "udp", 53) for a concatenation
Verdict = tuple[str, str | None]  # ("goto", "service-…"), ("drop", None)


@dataclass(slots=True)
class NftTable:
    family: str  # ip | ip6 | inet
    name: str
    chains: set[str] = field(default_factory=set)
    maps: dict[str, list[tuple[Key, Verdict | None, str | None]]] = field(default_factory=dict)  # key, verdict, comment
    sets: dict[str, list[Key]] = field(default_factory=dict)
    rules: dict[str, list[list[Any]]] = field(default_factory=dict)  # chain → each rule's "expr"


@dataclass(slots=True)
class NftRuleset:
    tables: dict[tuple[str, str], NftTable] = field(default_factory=dict)
    objects: int = 0
    unknown_objects: int = 0
    examples: list[str] = field(default_factory=list)
    error: str | None = None  # the text could not be read as nft JSON at all

    def table(self, family: str, name: str = "kube-proxy") -> NftTable | None:
        return self.tables.get((family, name))

    def note(self, why: str) -> None:
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(why)


def _documents(text: str) -> Iterator[Any]:
    decoder = json.JSONDecoder()
    index, end = 0, len(text)
    while True:
        while index < end and text[index].isspace():
            index += 1
        if index >= end:
            return
        document, index = decoder.raw_decode(text, index)
        yield document


def parse_nft_json(text: str) -> NftRuleset:
    ruleset = NftRuleset()
    try:
        documents = list(_documents(text))
    except json.JSONDecodeError as error:
        ruleset.error = f"not valid nft JSON ({error.msg} at character {error.pos}; truncated?)"
        return ruleset
    if not documents:
        ruleset.error = "empty: no nft JSON document"
        return ruleset
    for document in documents:
        items = document.get("nftables") if isinstance(document, dict) else None
        if not isinstance(items, list):
            ruleset.error = 'not nft JSON: no top-level "nftables" list'
            return ruleset
        for item in items:
            _add(ruleset, item)
    return ruleset


def _table_of(ruleset: NftRuleset, body: dict[str, Any]) -> NftTable | None:
    family, name = body.get("family"), body.get("table")
    if not isinstance(family, str) or not isinstance(name, str):
        return None
    key = (family, name)
    table = ruleset.tables.get(key)
    if table is None:
        table = ruleset.tables[key] = NftTable(family, name)
    return table


def _add(ruleset: NftRuleset, item: Any) -> None:
    ruleset.objects += 1
    if not isinstance(item, dict) or len(item) != 1:
        ruleset.unknown_objects += 1
        ruleset.note(f"object {ruleset.objects}: not a one-key object")
        return
    kind, body = next(iter(item.items()))
    if kind == "metainfo":
        return
    if not isinstance(body, dict):
        ruleset.unknown_objects += 1
        ruleset.note(f"object {ruleset.objects}: {kind} is not an object")
        return
    if kind == "table":
        family, name = body.get("family"), body.get("name")
        if isinstance(family, str) and isinstance(name, str):
            ruleset.tables.setdefault((family, name), NftTable(family, name))
        return
    table = _table_of(ruleset, body)
    if table is None:
        ruleset.unknown_objects += 1
        ruleset.note(f"object {ruleset.objects}: {kind} without family/table")
        return
    name = body.get("name") if kind != "rule" else body.get("chain")
    if not isinstance(name, str):
        ruleset.unknown_objects += 1
        ruleset.note(f"object {ruleset.objects}: {kind} without a name")
        return
    if kind == "chain":
        table.chains.add(name)
    elif kind == "map":
        table.maps[name] = [_map_element(e) for e in body.get("elem") or ()]
    elif kind == "set":
        table.sets[name] = [_key(_unwrap(e)[0]) for e in body.get("elem") or ()]
    elif kind == "rule":
        expr = body.get("expr")
        table.rules.setdefault(name, []).append(expr if isinstance(expr, list) else [])
    else:
        ruleset.unknown_objects += 1  # counters, flowtables, quotas…: nothing kube-proxy's rules need
        ruleset.note(f"object {ruleset.objects}: {kind} not read")


def _unwrap(raw: Any) -> tuple[Any, str | None]:
    """A commented element prints as ``{"elem": {"val": KEY, "comment": "…"}}``."""
    if isinstance(raw, dict) and isinstance(raw.get("elem"), dict):
        inner = raw["elem"]
        comment = inner.get("comment")
        return inner.get("val"), comment if isinstance(comment, str) else None
    return raw, None


def _key(raw: Any) -> Key:
    if isinstance(raw, dict) and isinstance(raw.get("concat"), list):
        return tuple(part if isinstance(part, str | int) else json.dumps(part) for part in raw["concat"])
    if isinstance(raw, str | int):
        return (raw,)
    return (json.dumps(raw, sort_keys=True),)  # a prefix or range: kept, never matched


def verdict(raw: Any) -> Verdict | None:
    if not isinstance(raw, dict) or len(raw) != 1:
        return None
    kind, body = next(iter(raw.items()))
    if kind in ("goto", "jump"):
        target = body.get("target") if isinstance(body, dict) else None
        return (kind, target) if isinstance(target, str) else None
    if kind in ("drop", "accept", "return", "continue", "reject"):
        return (kind, None)
    return None


def _map_element(raw: Any) -> tuple[Key, Verdict | None, str | None]:
    if isinstance(raw, list) and len(raw) == 2:
        key, comment = _unwrap(raw[0])
        return _key(key), verdict(raw[1]), comment
    return (json.dumps(raw, sort_keys=True),), None, None
