"""Label and field selectors as the API server understands them (the subset clients really send)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]
_Test = Callable[[Mapping[str, Any]], bool]

_SET_EXPR = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_KEY = re.compile(r"[\w./-]+")


class SelectorError(ValueError):
    pass


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def _field(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for step in path.split("."):
        value = value.get(step) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def _label_test(part: str) -> _Test:
    match = _SET_EXPR.match(part)
    if match:
        key, negate = match.group(1), match.group(2) == "notin"
        values = {v.strip() for v in match.group(3).split(",")}
        return lambda obj: (_labels(obj).get(key) in values) != negate
    if "!=" in part:
        key, value = (s.strip() for s in part.split("!=", 1))
        return lambda obj: _labels(obj).get(key) != value
    if "=" in part:
        key, value = (s.strip() for s in part.replace("==", "=").split("=", 1))
        return lambda obj: _labels(obj).get(key) == value
    if part.startswith("!") and _KEY.fullmatch(part[1:].strip()):
        absent = part[1:].strip()
        return lambda obj: absent not in _labels(obj)
    if _KEY.fullmatch(part):
        return lambda obj: part in _labels(obj)
    raise SelectorError(f"unable to parse requirement: {part!r}")


def _field_test(part: str) -> _Test:
    if "!=" in part:
        path, value = (s.strip() for s in part.split("!=", 1))
        return lambda obj: _field(obj, path) != value
    if "=" in part:
        path, value = (s.strip() for s in part.replace("==", "=").split("=", 1))
        return lambda obj: _field(obj, path) == value
    raise SelectorError(f"invalid field selector: {part!r}")


def _all(tests: list[_Test]) -> Predicate:
    return lambda obj: all(test(obj) for test in tests)


def label_selector(text: str | None) -> Predicate:
    return _all([_label_test(part) for part in _split(text or "")])


def field_selector(text: str | None) -> Predicate:
    return _all([_field_test(part) for part in _split(text or "")])
