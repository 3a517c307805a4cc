"""Probers: one file per protocol, one signature, picked by a dict (blackbox_exporter's shape).

Every prober is ``async (ProbeRequest) -> ProbeOutcome`` and never raises: a failure is an outcome
whose reason comes from the closed set.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from exporter.model.probe import ProbeOutcome, ProbeRequest
from exporter.probes.grpc import probe_grpc
from exporter.probes.http import probe_http
from exporter.probes.tcp import probe_tcp

ProbeFn = Callable[[ProbeRequest], Awaitable[ProbeOutcome]]

PROBERS: dict[str, ProbeFn] = {
    "HTTP": probe_http,
    "HTTPS": probe_http,
    "TCP": probe_tcp,
    "GRPC": probe_grpc,  # ProbeRequest.kind: protocol version GRPC over HTTP (h2c) or HTTPS (h2)
}

__all__ = ["PROBERS", "ProbeFn", "probe_grpc", "probe_http", "probe_tcp"]
