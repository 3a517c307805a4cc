"""HTTP(S) health check, the way an ALB/NLB sends it.

A new connection per check, ``GET path HTTP/1.1`` with the LB's User-Agent and a Host header of
``ip:port``, no redirects followed, TLS without certificate verification, the status matched against
the target group's success codes, everything within the health check timeout. The response body is
read only up to a small cap: a target that streams gigabytes costs us ``body_limit`` bytes.

Written on asyncio's protocol layer rather than an HTTP client library: a probe is one short
exchange whose every failure mode we must name, and the protocol layer costs a fraction of a client
session per probe.
"""

from __future__ import annotations

import asyncio
import re
import ssl

from exporter.model.probe import ProbeOutcome, ProbeRequest
from exporter.model.results import Reason
from exporter.probes.errors import reason_for

_MAX_HEAD = 64 * 1024
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?")
_NO_BODY_CODES = frozenset({204, 304})


def _tls_context() -> ssl.SSLContext:
    # Load balancers do not validate target certificates; neither do we.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_TLS = _tls_context()


class InvalidResponseError(Exception):
    """The target answered, but not with HTTP."""


class _ChunkScanner:
    """Finds the end of a chunked body without keeping it; only sizes and positions are tracked."""

    def __init__(self) -> None:
        self._pending = b""  # an incomplete chunk-size line
        self._remaining = 0  # bytes of chunk data (plus its CRLF) still to skip
        self.finished = False

    def feed(self, data: bytes) -> None:
        if self._pending:
            data, self._pending = self._pending + data, b""
        position, size = 0, len(data)
        while position < size and not self.finished:
            if self._remaining:
                step = min(self._remaining, size - position)
                self._remaining -= step
                position += step
                continue
            end = data.find(b"\r\n", position)
            if end < 0:
                self._pending = data[position:]
                if len(self._pending) > 4096:
                    raise InvalidResponseError("a chunk-size line longer than 4 KiB")
                return
            line = data[position:end].split(b";", 1)[0].strip()
            position = end + 2
            if not line:
                continue  # the CRLF closing a chunk, or the end of trailers
            try:
                chunk = int(line, 16)
            except ValueError:
                raise InvalidResponseError(f"a chunk size that is not hex: {line[:20]!r}") from None
            if chunk == 0:
                self.finished = True
            else:
                self._remaining = chunk + 2


class _Exchange(asyncio.Protocol):
    """Collects one response: status line, headers, then body bytes up to a cap."""

    def __init__(self, loop: asyncio.AbstractEventLoop, body_limit: int) -> None:
        self._loop = loop
        self._body_limit = body_limit
        self.done: asyncio.Future[None] = loop.create_future()
        self._head = bytearray()
        self.status: int | None = None
        self.first_byte_at: float | None = None
        self.body_bytes = 0
        self.truncated = False
        self._content_length: int | None = None
        self._chunks: _ChunkScanner | None = None

    # asyncio.Protocol -------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        if self.first_byte_at is None:
            self.first_byte_at = self._loop.time()
        try:
            if self.status is None:
                self._head += data
                self._parse_head()
            else:
                self._body(data)
        except InvalidResponseError as error:
            self.done.set_exception(error)

    def eof_received(self) -> bool | None:
        self._closed(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed(exc)

    # parsing ----------------------------------------------------------------------------------
    def _parse_head(self) -> None:
        while self.status is None:
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > _MAX_HEAD:
                    raise InvalidResponseError("response headers larger than 64 KiB")
                if len(self._head) >= 8 and not self._head.startswith(b"HTTP/"[: len(self._head)]):
                    raise InvalidResponseError(f"not an HTTP response: {bytes(self._head[:24])!r}")
                return
            head = bytes(self._head[:end])
            rest = bytes(self._head[end + 4 :])
            lines = head.split(b"\r\n")
            match = _STATUS_LINE.fullmatch(lines[0])
            if match is None:
                raise InvalidResponseError(f"not an HTTP status line: {lines[0][:40]!r}")
            code = int(match.group(1))
            if 100 <= code < 200 and code != 101:
                self._head = bytearray(rest)  # an interim response; the real one follows
                continue
            self._headers(lines[1:], code)
            self.status = code
            self._head = bytearray()
            if code in _NO_BODY_CODES or code == 101 or self._content_length == 0:
                self._finish()
            elif rest:
                self._body(rest)

    def _headers(self, lines: list[bytes], code: int) -> None:
        for line in lines:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise InvalidResponseError(f"a malformed header line: {line[:40]!r}")
            lowered = name.lower()
            if lowered == b"content-length":
                text = value.strip()
                if not text.isdigit():
                    raise InvalidResponseError(f"a Content-Length that is not a number: {text[:20]!r}")
                self._content_length = int(text)
            elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
                self._chunks = _ChunkScanner()

    def _body(self, data: bytes) -> None:
        self.body_bytes += len(data)
        if self._chunks is not None:
            self._chunks.feed(data)
            if self._chunks.finished:
                self._finish()
                return
        elif self._content_length is not None and self.body_bytes >= self._content_length:
            self._finish()
            return
        if self.body_bytes >= self._body_limit:
            self.truncated = True  # enough: the verdict depends on the status, not the rest of the body
            self._finish()

    def discard(self) -> None:
        """The probe is over: settle ``done`` so a late failure is not reported as never retrieved."""
        if not self.done.done():
            self.done.cancel()
        elif not self.done.cancelled():
            self.done.exception()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def _closed(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if exc is not None:
            self.done.set_exception(exc)
        elif self.status is None:
            got = f"after {len(self._head)} bytes" if self._head else "without sending anything"
            self.done.set_exception(InvalidResponseError(f"the target closed the connection {got}"))
        elif self._content_length is not None or self._chunks is not None:
            self.done.set_exception(
                InvalidResponseError(f"the target closed the connection after {self.body_bytes} body bytes")
            )
        else:
            self._finish()  # body delimited by the close


def _request_bytes(request: ProbeRequest) -> bytes:
    host = request.host_header
    if host is None:
        host = f"[{request.ip}]:{request.port}" if ":" in request.ip else f"{request.ip}:{request.port}"
    return (
        f"GET {request.path} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        f"User-Agent: {request.user_agent}\r\n"
        "Accept: */*\r\n"
        "Connection: close\r\n"
        "\r\n"
    ).encode("latin-1")


async def probe_http(request: ProbeRequest) -> ProbeOutcome:
    loop = asyncio.get_running_loop()
    started = loop.time()
    exchange = _Exchange(loop, request.body_limit)
    transport: asyncio.Transport | None = None
    phases: list[tuple[str, float]] = []
    mark = started
    try:
        async with asyncio.timeout(request.timeout):
            transport, _ = await loop.create_connection(lambda: exchange, request.ip, request.port)
            assert isinstance(transport, asyncio.Transport)
            now = loop.time()
            phases.append(("connect", now - mark))
            mark = now
            if request.protocol == "HTTPS":
                tls = await loop.start_tls(transport, exchange, _TLS, server_hostname="")
                if tls is None:
                    raise ssl.SSLError("the TLS handshake did not complete")
                transport = tls
                now = loop.time()
                phases.append(("tls", now - mark))
                mark = now
            transport.write(_request_bytes(request))
            await exchange.done
    except InvalidResponseError as error:
        return _failure(loop, started, phases, Reason.INVALID_RESPONSE, f"invalid response: {error}", exchange)
    except Exception as error:  # a probe never raises: every failure becomes a reason
        reason, detail = reason_for(error)
        return _failure(loop, started, phases, reason, detail, exchange)
    finally:
        if transport is not None:
            transport.abort()
        exchange.discard()
    ended = loop.time()
    first = exchange.first_byte_at or ended
    phases.append(("processing", first - mark))
    phases.append(("transfer", ended - first))
    code = exchange.status
    assert code is not None
    accepted = request.accepts(code)
    detail = f"HTTP {code}" + (f" after {exchange.body_bytes} bytes (read cap reached)" if exchange.truncated else "")
    return ProbeOutcome(
        success=accepted,
        reason=None if accepted else Reason.RESPONSE_CODE_MISMATCH,
        duration=ended - started,
        status_code=code,
        phases=tuple(phases),
        detail=detail if accepted else f"{detail}, expected {_codes_text(request)}",
    )


def _failure(
    loop: asyncio.AbstractEventLoop,
    started: float,
    phases: list[tuple[str, float]],
    reason: Reason,
    detail: str,
    exchange: _Exchange,
) -> ProbeOutcome:
    return ProbeOutcome(
        success=False,
        reason=reason,
        duration=loop.time() - started,
        status_code=exchange.status,
        phases=tuple(phases),
        detail=detail,
    )


def _codes_text(request: ProbeRequest) -> str:
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in request.success_ranges)
