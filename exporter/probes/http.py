"""HTTP(S) health check, the way an ALB/NLB sends it.

A new connection per check, ``GET path HTTP/1.1`` with the LB's User-Agent and a Host header of
``ip:port``, no redirects followed, TLS without certificate verification, the status matched against
the target group's success codes, everything within the health check timeout. The response body is
read only up to a small cap: a target that streams gigabytes costs us ``body_limit`` bytes; its head
is parsed in linear time and capped too (``MAX_HEAD_BYTES``, ``MAX_INTERIM_RESPONSES``). A probe's
``detail`` describes what went wrong in lbdoctor's words and never quotes the target's bytes: the
target belongs to a tenant, the detail reaches the status page, the API and the logs.

Written on asyncio's protocol layer rather than an HTTP client library: a probe is one short
exchange whose every failure mode we must name, and the protocol layer costs a fraction of a client
session per probe.
"""

from __future__ import annotations

import asyncio
import re
import ssl

from exporter.model.probe import ProbeOutcome, ProbeRequest, success_codes_text
from exporter.model.results import Reason
from exporter.probes.errors import reason_for

MAX_HEAD_BYTES = 64 * 1024  # status lines and headers of one probe's answer, interim responses included
# Go's net/http client gives up after 5 interim responses; a target that sends more is not answering.
MAX_INTERIM_RESPONSES = 5
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
                raise InvalidResponseError("a chunk size that is not hexadecimal") from None
            if chunk == 0:
                self.finished = True
            else:
                self._remaining = chunk + 2


class _Exchange(asyncio.Protocol):
    """Collects one response: status line, headers, then body bytes up to a cap.

    The head is parsed in linear time: each search for its end starts where the previous one
    stopped, interim (1xx) responses are skipped by moving an offset rather than copying what follows
    them, and every head byte counts towards one cap. A target streaming ``100 Continue`` forever is
    an invalid response after ``MAX_INTERIM_RESPONSES``, not a loop until the timeout.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, body_limit: int) -> None:
        self._loop = loop
        self._body_limit = body_limit
        self.done: asyncio.Future[None] = loop.create_future()
        self._head = bytearray()
        self._start = 0  # where the current (not yet complete) head begins in ``_head``
        self._scanned = 0  # ``_head`` before this offset holds no end of the current head
        self._head_bytes = 0  # head bytes received, interim responses included
        self.interim = 0  # interim (1xx) responses skipped
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
                self._head_bytes += len(data)
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
            end = self._head.find(b"\r\n\r\n", max(self._scanned, self._start))
            if end < 0:
                self._scanned = max(len(self._head) - 3, self._start)
                if self._head_bytes > MAX_HEAD_BYTES:
                    raise InvalidResponseError(f"response headers larger than {MAX_HEAD_BYTES // 1024} KiB")
                pending = len(self._head) - self._start
                if pending >= 5 and not self._head.startswith(b"HTTP/", self._start):
                    raise InvalidResponseError("not an HTTP response (it does not begin with HTTP/)")
                return
            lines = bytes(self._head[self._start : end]).split(b"\r\n")
            rest = end + 4
            match = _STATUS_LINE.fullmatch(lines[0])
            if match is None:
                raise InvalidResponseError("not an HTTP status line")
            code = int(match.group(1))
            if 100 <= code < 200 and code != 101:
                # An interim response; the real one follows. Skipped by offset, never by copying.
                self.interim += 1
                if self.interim > MAX_INTERIM_RESPONSES:
                    raise InvalidResponseError(f"more than {MAX_INTERIM_RESPONSES} interim (1xx) responses")
                self._start = self._scanned = rest
                if self._start > 4096 and self._start * 2 > len(self._head):
                    del self._head[: self._start]  # amortised: each byte is moved at most once more
                    self._start = self._scanned = 0
                continue
            self._headers(lines[1:])
            self.status = code
            body = bytes(self._head[rest:])
            self._head = bytearray()
            if code in _NO_BODY_CODES or code == 101 or self._content_length == 0:
                self._finish()
            elif body:
                self._body(body)

    def _headers(self, lines: list[bytes]) -> None:
        for number, line in enumerate(lines, 2):
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise InvalidResponseError(f"a malformed header line (line {number} of the response)")
            lowered = name.lower()
            if lowered == b"content-length":
                text = value.strip()
                if not text.isdigit():
                    raise InvalidResponseError("a Content-Length that is not a number")
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
            got = f"after {self._head_bytes} bytes" if self._head_bytes else "without sending anything"
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
        detail=detail if accepted else f"{detail}, expected {success_codes_text(request.success_ranges)}",
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
