"""Probes over IPv6, as the load balancer checks the targets of an IPv6 target group: real servers on ::1.

(gRPC over ::1 is in tests/test_probe_grpc.py.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from exporter.model.probe import ProbeRequest
from exporter.model.results import Reason
from exporter.probes import probe_http, probe_tcp
from tests.conftest import require_tool
from tests.servers import Server, read_head, respond, self_signed_context, unused_port

V6 = "::1"


async def test_http_over_ipv6_sends_a_bracketed_host() -> None:
    seen: list[bytes] = []
    async with Server(V6, respond(200, record=seen)) as server:
        outcome = await probe_http(ProbeRequest("HTTP", V6, server.port, 2.0, path="/healthz"))
    assert outcome.success and outcome.status_code == 200
    head = seen[0].decode()
    assert head.startswith("GET /healthz HTTP/1.1\r\n")
    assert f"Host: [::1]:{server.port}\r\n" in head  # what an ALB sends an IPv6 target: [ip]:port


async def test_http_over_ipv6_code_mismatch() -> None:
    async with Server(V6, respond(503)) as server:
        outcome = await probe_http(ProbeRequest("HTTP", V6, server.port, 2.0, success_ranges=((200, 399),)))
    assert outcome.reason is Reason.RESPONSE_CODE_MISMATCH and outcome.status_code == 503


async def test_https_over_ipv6(tmp_path: Path) -> None:
    require_tool("openssl")
    async with Server(V6, respond(200), tls=self_signed_context(tmp_path)) as server:
        outcome = await probe_http(ProbeRequest("HTTPS", V6, server.port, 2.0))
    assert outcome.success, outcome.detail
    assert "tls" in dict(outcome.phases)


async def test_http_over_ipv6_refused_and_timeout() -> None:
    refused = await probe_http(ProbeRequest("HTTP", V6, unused_port(V6), 1.0))
    assert refused.reason is Reason.CONNECTION_REFUSED

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await asyncio.sleep(2)

    async with Server(V6, silent) as server:
        slow = await probe_http(ProbeRequest("HTTP", V6, server.port, 0.3))
    assert slow.reason is Reason.TIMEOUT


async def test_tcp_over_ipv6() -> None:
    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with Server(V6, idle) as server:
        outcome = await probe_tcp(ProbeRequest("TCP", V6, server.port, 1.0))
    assert outcome.success
    refused = await probe_tcp(ProbeRequest("TCP", V6, unused_port(V6), 1.0))
    assert refused.reason is Reason.CONNECTION_REFUSED
