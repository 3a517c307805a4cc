"""The listening side of the HTTP face: lbdoctor's own accept loop, so a crowd of connections costs a bounded
number of descriptors and no log lines.

asyncio's server accepts whatever comes, logs every failed accept with a traceback (an exhausted
descriptor table logged 144 MB of them) and leaves limits to the protocol. Here each accepted socket is
counted before any work is done for it:

- at most ``max_connections`` open at once, and ``max_per_client`` from one address: beyond them the
  socket is reset at once (a counted ``lbdoctor_errors_total{component="web",kind="connection_limit"}``);
- TLS handshakes must finish within ``handshake_timeout``, with the context of the web config as it is
  now (certificates are picked up without a restart), and a client certificate must carry one of
  ``client_allowed_sans`` when the config lists them;
- an accept that fails for want of descriptors pauses accepting for a moment and is counted
  (``kind="accept_descriptors"``), logged at most once a minute: the node's probes keep their share;
- the listening socket closes when the site stops.

The aiohttp request handler sees an ordinary connection; its keep-alive timeout (set by ``server.py``)
closes a connection that sends no complete request head in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import resource
import socket
import ssl
import struct
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from exporter.telemetry import ErrorSink

log = structlog.get_logger("lbdoctor.web")

_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_ACCEPT_PAUSE = 0.25  # seconds without accepting after running out of descriptors
_LOG_EVERY = 60.0
_ACCEPTS_PER_WAKE = 64
# Descriptors kept out of the HTTP face's reach besides one per probe slot: watches, the AWS and
# kube-proxy readers, log files, the loop itself.
RESERVED_DESCRIPTORS = 128


def raise_descriptor_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard one (as Go programs do at start); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def connection_budget(wanted: int, probe_slots: int) -> int:
    """The most connections the HTTP face may hold: ``wanted``, but never eating into the descriptors one
    probe per slot and the reserve need."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, soft - probe_slots - RESERVED_DESCRIPTORS))


@dataclass(frozen=True)
class Limits:
    max_connections: int = 256
    max_per_client: int = 16
    handshake_timeout: float = 10.0


class _Tracked(asyncio.Protocol):
    """Hands every callback to the real protocol once ``admit`` accepts the connection (its client
    certificate, say), and says when the connection is gone."""

    __slots__ = ("_admit", "_closed", "_factory", "_inner")

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        admit: Callable[[asyncio.BaseTransport], bool],
        closed: asyncio.Future[None],
    ) -> None:
        self._factory = factory
        self._admit = admit
        self._closed = closed
        self._inner: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._admit(transport):
            transport.close()  # before a byte of the request reaches the handler
            return
        self._inner = self._factory()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            if self._inner is not None:
                self._inner.connection_lost(exc)
        finally:
            if not self._closed.done():
                self._closed.set_result(None)


class Listener:
    """Accepts on the given sockets and serves each connection with a protocol from ``factory``."""

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        factory: Callable[[], asyncio.Protocol],
        limits: Limits,
        errors: ErrorSink,
        *,
        tls: Callable[[], ssl.SSLContext | None] = lambda: None,
        allowed_sans: Callable[[], tuple[str, ...] | None] = lambda: None,
        san_check: Callable[[Any, tuple[str, ...]], bool] | None = None,
    ) -> None:
        self.sockets = list(sockets)
        self._factory = factory
        self.limits = limits
        self._errors = errors
        self._tls = tls
        self._allowed_sans = allowed_sans
        self._san_check = san_check
        self._loop = asyncio.get_running_loop()
        self.open = 0
        self._per_client: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused: set[int] = set()
        self._last_log: dict[str, float] = {}
        self._closed = False
        for sock in self.sockets:
            sock.setblocking(False)
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    # the aiohttp site's view -------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(sock.fileno())
            sock.close()

    async def wait_closed(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # accepting ---------------------------------------------------------------------------------
    def _accept(self, sock: socket.socket) -> None:
        for _ in range(_ACCEPTS_PER_WAKE):
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self._accept_failed(sock, error)
                return
            client = str(address[0]) if isinstance(address, tuple) else ""
            if self.open >= self.limits.max_connections or self._per_client[client] >= self.limits.max_per_client:
                self._refuse(conn, client)
                continue
            self.open += 1
            self._per_client[client] += 1
            task = self._loop.create_task(self._serve(conn, client), name=f"http {client}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _refuse(self, conn: socket.socket, client: str) -> None:
        """Reset a connection over a limit: no handshake, no buffers, no log line per connection."""
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        self._errors.error("web", "connection_limit")
        self._log_sometimes(
            "connection_limit",
            "connections over the limit are reset",
            client=client,
            open=self.open,
            max_connections=self.limits.max_connections,
            max_per_client=self.limits.max_per_client,
        )

    def _accept_failed(self, sock: socket.socket, error: OSError) -> None:
        if error.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
            return  # the client went away before we took it
        kind = "accept_descriptors" if error.errno in _OUT_OF_DESCRIPTORS else "accept"
        self._errors.error("web", kind)
        self._log_sometimes(kind, "cannot accept connections", error=error.strerror or str(error))
        # Stop trying for a moment: the listening socket stays readable, and retrying at once would spin.
        fd = sock.fileno()
        if fd in self._paused or self._closed:
            return
        self._paused.add(fd)
        self._loop.remove_reader(fd)

        def resume() -> None:
            self._paused.discard(fd)
            if not self._closed:
                self._loop.add_reader(fd, self._accept, sock)

        self._loop.call_later(_ACCEPT_PAUSE, resume)

    def _log_sometimes(self, kind: str, message: str, **fields: object) -> None:
        now = time.monotonic()
        if now - self._last_log.get(kind, -_LOG_EVERY) >= _LOG_EVERY:
            self._last_log[kind] = now
            log.warning(message, **fields, note="logged at most once a minute; counted in lbdoctor_errors_total")

    # serving -------------------------------------------------------------------------------------
    async def _serve(self, conn: socket.socket, client: str) -> None:
        closed: asyncio.Future[None] = self._loop.create_future()
        transport: asyncio.BaseTransport | None = None
        try:
            context = self._tls()
            allowed = self._allowed_sans() if context is not None else None
            check = self._san_check

            def admit(made: asyncio.BaseTransport) -> bool:
                if allowed is None or check is None or check(made.get_extra_info("peercert"), allowed):
                    return True
                self._errors.error("web", "client_certificate")
                return False

            try:
                transport, _ = await self._loop.connect_accepted_socket(
                    lambda: _Tracked(self._factory, admit, closed),
                    conn,
                    ssl=context,
                    ssl_handshake_timeout=self.limits.handshake_timeout if context is not None else None,
                )
            except (OSError, ssl.SSLError, TimeoutError, EOFError):
                self._errors.error("web", "tls_handshake" if context is not None else "connection")
                return
            await closed
        finally:
            if transport is not None and not closed.done():
                transport.close()  # cancelled (shutdown): do not leave the socket behind
            if transport is None:
                conn.close()
            self.open -= 1
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]


def bind(addresses: Sequence[tuple[str, int]], backlog: int = 128) -> list[socket.socket]:
    """Listening sockets for every HOST:PORT; a port 0 after the first reuses the first one's port."""
    sockets: list[socket.socket] = []
    try:
        for host, port in addresses:
            if port == 0 and sockets:
                port = int(sockets[0].getsockname()[1])
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sockets.append(sock)
            sock.bind((host, port))
            sock.listen(backlog)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
