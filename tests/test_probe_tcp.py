"""The TCP prober (what ``nc -z`` and an NLB TCP check do) against real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from exporter.model.probe import ProbeRequest
from exporter.model.results import Reason
from exporter.probes import PROBERS, probe_tcp
from tests.servers import Server, unused_port


async def test_open_port_connects(ip: str) -> None:
    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with Server(ip, idle) as server:
        outcome = await probe_tcp(ProbeRequest("TCP", ip, server.port, timeout=1))
    assert outcome.success and outcome.reason is None and outcome.status_code is None


async def test_closed_port_is_refused(ip: str) -> None:
    outcome = await probe_tcp(ProbeRequest("TCP", ip, unused_port(ip), timeout=1))
    assert outcome.reason is Reason.CONNECTION_REFUSED


async def test_unanswered_connect_times_out(ip: str) -> None:
    """A listener whose accept queue is full drops SYNs, as a hung target does."""
    listener = socket.socket()
    listener.bind((ip, 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect((ip, port))
        fillers.append(filler)
    await asyncio.sleep(0.1)
    try:
        started = time.monotonic()
        outcome = await probe_tcp(ProbeRequest("TCP", ip, port, timeout=0.5))
        assert outcome.reason is Reason.TIMEOUT
        assert time.monotonic() - started < 1.5
    finally:
        for sock in (*fillers, listener):
            sock.close()


def test_one_prober_per_protocol() -> None:
    assert set(PROBERS) == {"HTTP", "HTTPS", "TCP", "GRPC"}
