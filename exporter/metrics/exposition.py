"""A small, fast writer of the Prometheus text format (0.0.4) for the per-target families.

prometheus_client's generic path costs about 10 µs a series; the per-target families here are
rendered from pre-joined label strings instead, so 5,000 targets render in tens of milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from exporter.metrics.names import MetricName

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def join_labels(names: Sequence[str], values: Sequence[str]) -> str:
    return ",".join(f'{name}="{escape(value)}"' for name, value in zip(names, values, strict=True))


def number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class FamilyWriter:
    """Collects samples of one family, then renders HELP, TYPE and the samples."""

    __slots__ = ("_lines", "_metric")

    def __init__(self, metric: MetricName) -> None:
        self._metric = metric
        self._lines: list[str] = []

    def add(self, labels: str, value: float) -> None:
        self._lines.append(f"{self._metric.name}{{{labels}}} {number(value)}\n")

    def render(self) -> Iterable[str]:
        yield f"# HELP {self._metric.name} {self._metric.help}\n"
        yield f"# TYPE {self._metric.name} {self._metric.type}\n"
        yield from self._lines
