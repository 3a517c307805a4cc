"""gRPC health check, the way an ALB sends it to a target group whose protocol version is GRPC.

A new connection per check; HTTP/2 in cleartext (h2c, prior knowledge) for an HTTP target group and
over TLS with ALPN ``h2`` for an HTTPS one, certificates not verified; one ``POST`` to the health-check
path (``/AWS.ALB/healthcheck`` by default, or ``/package.Service/Method``) with ``content-type:
application/grpc`` and an empty message (the five-byte frame ``00 00000000``). The verdict is the
answer's ``grpc-status`` (in the trailers, or in the headers of a trailers-only answer) against the
target group's matcher of gRPC codes (0-99; default ``12``, UNIMPLEMENTED, so a server that does not
implement the default path is healthy). The response message is not read for meaning: the ALB judges
the status, so ``grpc.health.v1.Health/Check`` answering NOT_SERVING with status 0 passes.

HTTP/2 framing comes from ``h2`` (pure Python, no I/O of its own); the exchange runs on asyncio's
protocol layer like the HTTP prober. A hostile target costs bounded work: at most ``body_limit`` +
64 KiB are read, a header block may not inflate beyond 16 KiB, and at most four header blocks
(interim answers included) are accepted.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from exporter.model.probe import ProbeOutcome, ProbeRequest, success_codes_text
from exporter.model.results import Reason
from exporter.probes.errors import reason_for

_HEAD_ALLOWANCE = 64 * 1024  # bytes of frames, settings and headers read besides the body limit
_MAX_HEADER_LIST = 16 * 1024  # the most a header block may inflate to
_MAX_HEADER_BLOCKS = 4  # interim answers, the answer, the trailers
_EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"  # uncompressed, length 0

STATUS_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)


def status_text(code: int) -> str:
    """``12 (UNIMPLEMENTED)``; codes without a name are shown as the number alone."""
    return f"{code} ({STATUS_NAMES[code]})" if 0 <= code < len(STATUS_NAMES) else str(code)


def _tls_context() -> ssl.SSLContext:
    # Load balancers do not validate target certificates; neither do we. gRPC needs HTTP/2: offer only h2.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context


_TLS = _tls_context()


class InvalidGrpcResponseError(Exception):
    """The target answered, but not with a gRPC response lbdoctor can judge."""


class _Exchange(asyncio.Protocol):
    """One HTTP/2 stream: send the health check, collect the status, headers and trailers."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request: ProbeRequest) -> None:
        self._loop = loop
        self._request = request
        self._limit = request.body_limit + _HEAD_ALLOWANCE
        self.done: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.first_byte_at: float | None = None
        self.received = 0
        self.body_bytes = 0
        self.http_status: int | None = None
        self.grpc_status: int | None = None
        self._blocks = 0
        self._stream = 1
        config = h2.config.H2Configuration(client_side=True, header_encoding="latin-1")
        self._h2 = h2.connection.H2Connection(config=config)
        self._h2.decoder.max_header_list_size = _MAX_HEADER_LIST

    # asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def start(self, transport: asyncio.Transport) -> None:
        """Send the connection preface and the health check (after TLS, when there is TLS)."""
        self.transport = transport
        request = self._request
        host = f"[{request.ip}]" if ":" in request.ip else request.ip
        # The settings of the connection preface (changing them later would be a frame of its own).
        self._h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: _MAX_HEADER_LIST,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: max(request.body_limit, 1024),
            },
        )
        self._h2.initiate_connection()
        self._h2.send_headers(
            self._stream,
            [
                (":method", "POST"),
                (":scheme", "https" if request.protocol == "HTTPS" else "http"),
                (":path", request.path),
                (":authority", f"{host}:{request.port}"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("user-agent", request.user_agent),
            ],
        )
        self._h2.send_data(self._stream, _EMPTY_MESSAGE, end_stream=True)
        transport.write(self._h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        if self.first_byte_at is None:
            self.first_byte_at = self._loop.time()
        self.received += len(data)
        try:
            if self.received > self._limit:
                raise InvalidGrpcResponseError(
                    f"the target sent more than {self._limit} bytes without finishing its answer"
                )
            events = self._h2.receive_data(data)
            for event in events:
                self._event(event)
                if self.done.done():
                    return
        except InvalidGrpcResponseError as error:
            self.done.set_exception(error)
            return
        except h2.exceptions.ProtocolError as error:
            self.done.set_exception(InvalidGrpcResponseError(f"not a valid HTTP/2 answer: {error}"))
            return
        outgoing = self._h2.data_to_send()
        if outgoing and self.transport is not None and not self.transport.is_closing():
            self.transport.write(outgoing)

    def eof_received(self) -> bool | None:
        self._closed(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed(exc)

    # HTTP/2 events ----------------------------------------------------------------------------
    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.InformationalResponseReceived | h2.events.ResponseReceived):
            self._header_block(event.headers or [], trailers=False)
        elif isinstance(event, h2.events.TrailersReceived):
            self._header_block(event.headers or [], trailers=True)
        elif isinstance(event, h2.events.DataReceived):
            self.body_bytes += len(event.data or b"")
            if event.flow_controlled_length:
                self._h2.acknowledge_received_data(event.flow_controlled_length, self._stream)
        elif isinstance(event, h2.events.StreamEnded):
            self._finish()
        elif isinstance(event, h2.events.StreamReset):
            raise InvalidGrpcResponseError(f"the target reset the stream (HTTP/2 error {event.error_code!s})")
        elif isinstance(event, h2.events.ConnectionTerminated):
            raise InvalidGrpcResponseError(f"the target closed the HTTP/2 connection (GOAWAY {event.error_code!s})")

    def _header_block(self, headers: Sequence[tuple[bytes | str, bytes | str]], *, trailers: bool) -> None:
        self._blocks += 1
        if self._blocks > _MAX_HEADER_BLOCKS:
            raise InvalidGrpcResponseError(f"more than {_MAX_HEADER_BLOCKS} header blocks in one answer")
        for raw_name, raw_value in headers:
            name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name
            value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
            if name == ":status" and not trailers:
                status = int(value) if value.isdigit() else None
                if status is not None and not 100 <= status < 200:
                    self.http_status = status
            elif name == "grpc-status":
                if not (value.isascii() and value.isdigit() and len(value) <= 3):
                    raise InvalidGrpcResponseError(f"a grpc-status that is not a number: {value[:20]!r}")
                self.grpc_status = int(value)

    # settling ---------------------------------------------------------------------------------
    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def _closed(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if exc is not None:
            self.done.set_exception(exc)
        elif self.received == 0:
            self.done.set_exception(InvalidGrpcResponseError("the target closed the connection without answering"))
        else:
            self.done.set_exception(
                InvalidGrpcResponseError(f"the target closed the connection after {self.received} bytes, mid-answer")
            )

    def discard(self) -> None:
        """The probe is over: settle ``done`` so a late failure is not reported as never retrieved."""
        if not self.done.done():
            self.done.cancel()
        elif not self.done.cancelled():
            self.done.exception()


async def probe_grpc(request: ProbeRequest) -> ProbeOutcome:
    loop = asyncio.get_running_loop()
    started = loop.time()
    exchange = _Exchange(loop, request)
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
                negotiated = tls.get_extra_info("ssl_object")
                if negotiated is not None and negotiated.selected_alpn_protocol() != "h2":
                    raise InvalidGrpcResponseError("the target's TLS did not agree to HTTP/2 (ALPN h2)")
                now = loop.time()
                phases.append(("tls", now - mark))
                mark = now
            exchange.start(transport)
            await exchange.done
    except InvalidGrpcResponseError as error:
        return _failure(loop, started, phases, Reason.INVALID_RESPONSE, f"invalid gRPC response: {error}", exchange)
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
    return _verdict(request, exchange, ended - started, tuple(phases))


def _verdict(
    request: ProbeRequest, exchange: _Exchange, duration: float, phases: tuple[tuple[str, float], ...]
) -> ProbeOutcome:
    code, http = exchange.grpc_status, exchange.http_status
    if code is None:
        return ProbeOutcome(
            success=False,
            reason=Reason.INVALID_RESPONSE,
            duration=duration,
            status_code=http,
            phases=phases,
            detail=f"HTTP/2 {http} without a grpc-status: the port does not answer gRPC on {request.path}",
        )
    said = f"gRPC status {status_text(code)}"  # grpc-message is the target's text: never echoed
    accepted = request.accepts(code)
    return ProbeOutcome(
        success=accepted,
        reason=None if accepted else Reason.RESPONSE_CODE_MISMATCH,
        duration=duration,
        status_code=http,
        grpc_status=code,
        phases=phases,
        detail=said if accepted else f"{said}, expected {success_codes_text(request.success_ranges)}",
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
        status_code=exchange.http_status,
        grpc_status=exchange.grpc_status,
        phases=tuple(phases),
        detail=detail,
    )
