"""Parse ``nft -j list table {ip,ip6} kube-proxy`` (libnftables-json(5), docs/kube-proxy.md §6). Pure.

Keeps what the comparison needs: chain names, the elements of sets and verdict maps, and from each
rule the chains it leads to and any DNAT address. The document is decoded one object at a time, so
memory follows what is kept, not the size of the JSON. Tolerant: objects of unknown kinds are counted, several
JSON documents one after another (two ``nft -j`` runs into one file) are all read, and text that
is not JSON (a truncated capture) yields an ``error`` instead of an exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from exporter.dataplane.expected import canonical_ip

MAX_EXAMPLES = 5
Key = tuple[str | int, ...]  # an element key: ("10.96.0.10", "udp", 53) for a concatenation
Verdict = tuple[str, str | None]  # ("goto", "service-…"), ("drop", None)


@dataclass(slots=True)
class NftTable:
    """One table. Rules are not kept as their (verbose) expression trees, only as what the comparison
    reads from them: which chains each chain jumps or goes to, and the address an endpoint chain DNATs to."""

    family: str  # ip | ip6 | inet
    name: str
    chains: set[str] = field(default_factory=set)
    maps: dict[str, list[tuple[Key, Verdict | None, str | None]]] = field(default_factory=dict)  # key, verdict, comment
    sets: dict[str, list[Key]] = field(default_factory=dict)
    jumps: dict[str, list[str]] = field(default_factory=dict)  # chain → chains its rules jump or go to
    dnat: dict[str, tuple[str, int]] = field(default_factory=dict)  # chain → its first "dnat to" address
    rules: dict[str, int] = field(default_factory=dict)  # chain → how many rules it has


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


_ENVELOPE = re.compile(r'\s*\{\s*"nftables"\s*:\s*\[')
_SPACE = re.compile(r"\s*")


def _items(text: str) -> Iterator[Any]:
    """The objects of the ``nftables`` lists, one at a time, so a 100 MB document never exists as one
    Python structure. Several documents may follow one another. Unusual envelopes (more keys, another
    order) are decoded whole. Raises ValueError (JSONDecodeError) on text that is not such JSON."""
    decoder = json.JSONDecoder()
    index, end = 0, len(text)
    while True:
        index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
        if index >= end:
            return
        envelope = _ENVELOPE.match(text, index)
        if envelope is None:
            document, index = decoder.raw_decode(text, index)
            items = document.get("nftables") if isinstance(document, dict) else None
            if not isinstance(items, list):
                raise ValueError('not nft JSON: no top-level "nftables" list')
            yield from items
            continue
        index = envelope.end()
        while True:
            index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
            if text.startswith("]", index):
                closing = re.compile(r"\]\s*\}").match(text, index)
                if closing is None:
                    raise json.JSONDecodeError("expected ]}", text, index)
                index = closing.end()
                break
            item, index = decoder.raw_decode(text, index)
            yield item
            index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
            if text.startswith(",", index):
                index += 1
            elif not text.startswith("]", index):
                raise json.JSONDecodeError("expected , or ]", text, index)


def parse_nft_json(text: str) -> NftRuleset:
    ruleset = NftRuleset()
    try:
        for item in _items(text):
            _add(ruleset, item)
    except json.JSONDecodeError as error:
        ruleset.error = f"not valid nft JSON ({error.msg} at character {error.pos}; truncated?)"
        return ruleset
    except ValueError as error:
        ruleset.error = str(error)
        return ruleset
    if ruleset.objects == 0 and not ruleset.tables:
        ruleset.error = "empty: no nft JSON document" if not text.strip() else ruleset.error
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
        expressions = body.get("expr")
        expressions = expressions if isinstance(expressions, list) else []
        table.rules[name] = table.rules.get(name, 0) + 1
        targets = list(rule_targets(expressions))
        if targets:
            table.jumps.setdefault(name, []).extend(targets)
        if name not in table.dnat:
            address = dnat_address(expressions)
            if address is not None:
                table.dnat[name] = address
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


def rule_targets(expressions: list[Any]) -> Iterator[str]:
    """Chains a rule jumps or goes to, including through an inline verdict map."""
    for expression in expressions:
        if not isinstance(expression, dict):
            continue
        for kind in ("jump", "goto"):
            body = expression.get(kind)
            if isinstance(body, dict) and isinstance(body.get("target"), str):
                yield body["target"]
        vmap = expression.get("vmap")
        if isinstance(vmap, dict):
            data = vmap.get("data")
            entries = data.get("set") if isinstance(data, dict) else None
            for entry in entries if isinstance(entries, list) else ():
                if isinstance(entry, list) and len(entry) == 2:
                    found = verdict(entry[1])
                    if found is not None and found[1] is not None:
                        yield found[1]


def dnat_address(expressions: list[Any]) -> tuple[str, int] | None:
    for expression in expressions:
        body = expression.get("dnat") if isinstance(expression, dict) else None
        if isinstance(body, dict) and isinstance(body.get("addr"), str) and isinstance(body.get("port"), int):
            return canonical_ip(body["addr"]), body["port"]
    return None
