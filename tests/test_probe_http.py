"""The HTTP(S) prober against real servers on loopback addresses, one misbehaviour each."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path

import pytest

from exporter.model.probe import ProbeRequest
from exporter.model.results import Reason
from exporter.probes import probe_http
from tests.conftest import require_tool
from tests.servers import Server, http_response, read_head, respond, self_signed_context, unused_port


def request(ip: str, port: int, **options: object) -> ProbeRequest:
    defaults: dict[str, object] = {"protocol": "HTTP", "ip": ip, "port": port, "timeout": 2.0, "path": "/healthz"}
    defaults.update(options)
    return ProbeRequest(**defaults)  # type: ignore[arg-type]


async def test_success_sends_what_the_alb_sends(ip: str) -> None:
    """A 200 passes, and the request is GET path HTTP/1.1 with the LB's User-Agent and an ip:port Host."""
    seen: list[bytes] = []
    async with Server(ip, respond(200, record=seen)) as server:
        outcome = await probe_http(request(ip, server.port))
    assert outcome.success and outcome.reason is None and outcome.status_code == 200
    head = seen[0].decode()
    assert head.startswith("GET /healthz HTTP/1.1\r\n")
    assert f"Host: {ip}:{server.port}\r\n" in head
    assert "User-Agent: ELB-HealthChecker/2.0\r\n" in head
    assert [name for name, _ in outcome.phases] == ["connect", "processing", "transfer"]


async def test_each_check_uses_a_new_connection(ip: str) -> None:
    """Two probes open two connections, as the LB does (it closes after every check)."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_head(reader)
        writer.write(http_response(200))
        await writer.drain()

    async with Server(ip, handler) as server:
        await probe_http(request(ip, server.port))
        await probe_http(request(ip, server.port))
    assert connections == 2


@pytest.mark.parametrize("code", [404, 500, 503])
async def test_unexpected_status_is_a_code_mismatch(ip: str, code: int) -> None:
    async with Server(ip, respond(code)) as server:
        outcome = await probe_http(request(ip, server.port))
    assert not outcome.success
    assert outcome.reason is Reason.RESPONSE_CODE_MISMATCH
    assert outcome.status_code == code
    assert "expected 200" in outcome.detail


async def test_redirect_is_not_followed(ip: str) -> None:
    """A 302 is judged as 302 (ALB default 200 fails), the Location is never fetched."""
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_head(reader))
        writer.write(http_response(302, b"", extra="Location: /login\r\n"))
        await writer.drain()

    async with Server(ip, handler) as server:
        alb = await probe_http(request(ip, server.port))
        nlb = await probe_http(request(ip, server.port, success_ranges=((200, 399),)))
    assert alb.reason is Reason.RESPONSE_CODE_MISMATCH and alb.status_code == 302
    assert nlb.success and nlb.status_code == 302
    assert all(b"/login" not in head for head in seen)


async def test_refused(ip: str) -> None:
    outcome = await probe_http(request(ip, unused_port(ip)))
    assert not outcome.success and outcome.reason is Reason.CONNECTION_REFUSED


async def test_slow_answer_times_out_within_the_timeout(ip: str) -> None:
    async with Server(ip, respond(200, delay=3)) as server:
        started = time.monotonic()
        outcome = await probe_http(request(ip, server.port, timeout=0.5))
    assert outcome.reason is Reason.TIMEOUT
    assert time.monotonic() - started < 2.0


async def test_socket_held_open_without_answer_times_out(ip: str) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with Server(ip, silent) as server:
        outcome = await probe_http(request(ip, server.port, timeout=0.3))
    assert outcome.reason is Reason.TIMEOUT


async def test_reset_mid_response(ip: str) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close => RST
        writer.transport.abort()

    async with Server(ip, reset) as server:
        outcome = await probe_http(request(ip, server.port))
    assert not outcome.success
    assert outcome.reason is Reason.CONNECTION_RESET
    assert outcome.status_code == 200  # the status arrived; the body did not


async def test_garbage_instead_of_http(ip: str) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n")
        await writer.drain()
        await asyncio.sleep(2)

    async with Server(ip, garbage) as server:
        started = time.monotonic()
        outcome = await probe_http(request(ip, server.port))
    assert outcome.reason is Reason.INVALID_RESPONSE
    assert "not an HTTP response" in outcome.detail
    assert "SSH" not in outcome.detail and "Debian" not in outcome.detail  # the target's bytes are never echoed
    assert time.monotonic() - started < 1.0  # recognised at once, not at the timeout


async def test_closed_without_response_is_invalid(ip: str) -> None:
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)

    async with Server(ip, close) as server:
        outcome = await probe_http(request(ip, server.port))
    assert outcome.reason is Reason.INVALID_RESPONSE
    assert "without sending anything" in outcome.detail


async def test_huge_body_is_read_only_up_to_the_cap(ip: str) -> None:
    """A 10 GB answer costs the probe its body cap, and the verdict follows the status code."""
    sent = 0

    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n")
        chunk = b"x" * 65536
        while sent < 10_000_000_000:
            writer.write(chunk)
            sent += len(chunk)
            await writer.drain()

    async with Server(ip, huge) as server:
        outcome = await probe_http(request(ip, server.port, body_limit=32 * 1024))
        await asyncio.sleep(0.1)
    assert outcome.success and outcome.status_code == 200
    assert "read cap reached" in outcome.detail
    assert sent < 50_000_000  # the server stopped soon after the probe hung up


async def test_never_ending_chunked_body(ip: str) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"400\r\n" + b"y" * 1024 + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0)

    async with Server(ip, endless) as server:
        outcome = await probe_http(request(ip, server.port, body_limit=16 * 1024))
    assert outcome.reason is Reason.RESPONSE_CODE_MISMATCH and outcome.status_code == 503


async def test_chunked_body_completes(ip: str) -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(3)  # keeps the connection open: completion must come from the framing

    async with Server(ip, chunked) as server:
        started = time.monotonic()
        outcome = await probe_http(request(ip, server.port))
    assert outcome.success
    assert time.monotonic() - started < 1.0


async def test_body_until_close(ip: str) -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nbody without length")
        await writer.drain()

    async with Server(ip, until_close) as server:
        outcome = await probe_http(request(ip, server.port))
    assert outcome.success


async def test_interim_100_continue_is_skipped(ip: str) -> None:
    async def interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + http_response(200))
        await writer.drain()

    async with Server(ip, interim) as server:
        outcome = await probe_http(request(ip, server.port))
    assert outcome.success and outcome.status_code == 200


async def test_a_few_interim_responses_are_skipped(ip: str) -> None:
    """Up to five interim responses (Go's client allows as many), split at every byte, then the real one."""

    async def interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        stream = b"HTTP/1.1 100 Continue\r\n\r\n" * 3 + b"HTTP/1.1 102 Processing\r\nX: y\r\n\r\n" * 2
        for index in range(len(stream)):
            writer.write(stream[index : index + 1])
            await writer.drain()
        writer.write(http_response(204, b""))
        await writer.drain()

    async with Server(ip, interim) as server:
        outcome = await probe_http(request(ip, server.port, success_ranges=((204, 204),)))
    assert outcome.success and outcome.status_code == 204, outcome.detail


async def test_endless_interim_responses_are_invalid_at_once(ip: str) -> None:
    """A target streaming 100 Continue forever is an invalid response after five, not a busy loop
    until the timeout (it used to make head parsing quadratic and take a core)."""

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        chunk = b"HTTP/1.1 100 Continue\r\n\r\n" * 2600  # ~64 KiB a write
        while True:
            writer.write(chunk)
            await writer.drain()

    async with Server(ip, endless) as server:
        started, cpu = time.monotonic(), time.process_time()
        outcome = await probe_http(request(ip, server.port, timeout=5.0))
        elapsed, spent = time.monotonic() - started, time.process_time() - cpu
    assert outcome.reason is Reason.INVALID_RESPONSE
    assert "more than 5 interim (1xx) responses" in outcome.detail
    assert elapsed < 1.0 and spent < 0.5


async def test_a_head_sent_byte_by_byte_is_parsed_in_linear_time(ip: str) -> None:
    """60 KiB of headers a byte at a time: each byte is scanned once, not the whole head again."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
        + b"".join(b"X-Pad-%05d: %s\r\n" % (i, b"v" * 40) for i in range(1150))
        + b"\r\n"
    )
    assert 60_000 < len(head) < 64 * 1024
    from exporter.probes.http import _Exchange

    loop = asyncio.get_running_loop()
    exchange = _Exchange(loop, 1024)
    cpu = time.process_time()
    for index in range(len(head)):
        exchange.data_received(head[index : index + 1])
    spent = time.process_time() - cpu
    assert exchange.status == 200 and exchange.done.done()
    assert spent < 0.5  # quadratic rescanning costs ~2 * 10^9 byte comparisons here


async def test_https_without_certificate_verification(ip: str, tmp_path: Path) -> None:
    """A self-signed certificate passes (LBs do not verify), and the TLS phase is timed."""
    require_tool("openssl")
    async with Server(ip, respond(200), tls=self_signed_context(tmp_path)) as server:
        outcome = await probe_http(request(ip, server.port, protocol="HTTPS"))
    assert outcome.success, outcome.detail
    assert "tls" in dict(outcome.phases)


async def test_https_against_plain_http_is_a_tls_error(ip: str) -> None:
    """A plain HTTP server answers the ClientHello with a 400, as nginx does: the handshake fails."""

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(http_response(400, b"plain HTTP request sent to HTTPS port?"))
        await writer.drain()

    async with Server(ip, plain) as server:
        outcome = await probe_http(request(ip, server.port, protocol="HTTPS"))
    assert outcome.reason is Reason.TLS_ERROR
    assert "TLS handshake failed" in outcome.detail


async def test_http_against_tls_server_is_invalid(ip: str, tmp_path: Path) -> None:
    require_tool("openssl")
    async with Server(ip, respond(200), tls=self_signed_context(tmp_path)) as server:
        outcome = await probe_http(request(ip, server.port))
    assert not outcome.success
    assert outcome.reason in (Reason.INVALID_RESPONSE, Reason.CONNECTION_RESET)


def test_chunk_scanner_handles_any_split() -> None:
    """However the stream is cut into packets, the end of a chunked body is found exactly once."""
    from exporter.probes.http import _ChunkScanner

    body = b"5\r\nhello\r\n1a;ext=1\r\n" + b"z" * 26 + b"\r\n0\r\n\r\n"
    for cut in range(1, len(body)):
        scanner = _ChunkScanner()
        scanner.feed(body[:cut])
        assert not scanner.finished or cut >= body.index(b"0\r\n") + 3
        scanner.feed(body[cut:])
        assert scanner.finished
