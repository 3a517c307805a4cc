"""The target-group success-code matcher grammar: ``200``, ``200,202``, ``200-399`` and mixes of them."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.lb.annotations import quoted


class SuccessCodesError(ValueError):
    """The matcher text is not valid; the message says why in words a person can act on."""


@dataclass(frozen=True, slots=True)
class SuccessCodes:
    text: str
    ranges: tuple[tuple[int, int], ...]

    def matches(self, code: int) -> bool:
        return any(low <= code <= high for low, high in self.ranges)

    def __str__(self) -> str:
        return self.text


def parse_success_codes(text: str, allowed: tuple[int, int]) -> SuccessCodes:
    """Parse a matcher; every code must lie within ``allowed`` (ALB 200-499, NLB 200-599, gRPC 0-99)."""
    stripped = text.strip()
    if not stripped:
        raise SuccessCodesError("is empty; expected codes like 200, 200,202 or 200-399")
    ranges: list[tuple[int, int]] = []
    for raw_item in stripped.split(","):
        item = raw_item.strip()
        low_text, sep, high_text = item.partition("-")
        if not _is_code(low_text) or (sep and not _is_code(high_text)):
            raise SuccessCodesError(f"has {quoted(item)}, which is neither a code nor a range like 200-399")
        low = int(low_text)
        high = int(high_text) if sep else low
        if low > high:
            raise SuccessCodesError(f"has the range {quoted(item)}, whose start is above its end")
        if low < allowed[0] or high > allowed[1]:
            raise SuccessCodesError(
                f"has {quoted(item)}, outside the {allowed[0]}-{allowed[1]} this load balancer accepts"
            )
        ranges.append((low, high))
    merged = _merge(ranges)
    # However long the text, the matcher is at most a few hundred ranges; an overlong text is shown
    # in its merged form.
    text = stripped if len(stripped) <= 64 else ",".join(str(a) if a == b else f"{a}-{b}" for a, b in merged)
    return SuccessCodes(text=text, ranges=merged)


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return tuple(merged)


def _is_code(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 3
