"""What components report their survived errors to (``lbdoctor_errors_total``); SelfMetrics implements it."""

from __future__ import annotations

from typing import Protocol


class ErrorSink(Protocol):
    def error(self, component: str, kind: str) -> None: ...
