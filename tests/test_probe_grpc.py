"""The gRPC health-check prober against a real gRPC server (grpcio) on loopback, IPv4 and ::1, h2c and TLS,
and against hand-made HTTP/2 servers that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import hyperframe.frame
import pytest

from exporter.model.probe import ProbeRequest
from exporter.model.results import Reason
from exporter.probes import PROBERS, probe_grpc
from tests.conftest import next_ip, require_tool
from tests.servers import Server, respond, self_signed_files, unused_port

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"  # HealthCheckResponse{status: SERVING | NOT_SERVING}


def grpc_request(ip: str, port: int, *, codes: str = "12", **options: Any) -> ProbeRequest:
    ranges = tuple(
        (int(low), int(high or low)) for low, _, high in (item.partition("-") for item in codes.split(","))
    )
    defaults: dict[str, Any] = {
        "protocol": "HTTP",
        "ip": ip,
        "port": port,
        "timeout": 3.0,
        "path": "/AWS.ALB/healthcheck",
        "success_ranges": ranges,
        "protocol_version": "GRPC",
    }
    defaults.update(options)
    return ProbeRequest(**defaults)


class Recorded:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []


def health_servicer(status: bytes, recorded: Recorded, code: grpc.StatusCode | None = None) -> grpc.GenericRpcHandler:
    """grpc.health.v1.Health with Check answering ``status`` (or failing with ``code``); nothing else."""

    def check(request: bytes, context: grpc.ServicerContext) -> bytes:
        recorded.calls.append((HEALTH_CHECK, request, dict(context.invocation_metadata())))
        if code is not None:
            context.abort(code, "not today")
        return status

    handler = grpc.unary_unary_rpc_method_handler(check)  # no (de)serializers: raw message bytes
    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": handler})


@contextlib.contextmanager
def grpc_server(
    address: str, handlers: list[grpc.GenericRpcHandler], credentials: grpc.ServerCredentials | None = None
) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=handlers)
    port = server.add_secure_port(f"{address}:0", credentials) if credentials else server.add_insecure_port(
        f"{address}:0"
    )
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None).wait(2)


ADDRESSES = [pytest.param("ipv4", id="ipv4"), pytest.param("ipv6", id="ipv6-loopback")]


def address_of(family: str) -> tuple[str, str]:
    """(probe IP, gRPC bind address)"""
    if family == "ipv6":
        return "::1", "[::1]"
    ip = next_ip()
    return ip, ip


@pytest.mark.parametrize("family", ADDRESSES)
async def test_default_check_is_healthy_when_the_method_is_unimplemented(family: str) -> None:
    """The ALB's default: POST /AWS.ALB/healthcheck, healthy on grpc-status 12 (UNIMPLEMENTED)."""
    ip, bind = address_of(family)
    with grpc_server(bind, [health_servicer(SERVING, Recorded())]) as port:
        outcome = await probe_grpc(grpc_request(ip, port))
    assert outcome.success, outcome.detail
    assert outcome.grpc_status == 12 and outcome.status_code == 200
    assert "UNIMPLEMENTED" in outcome.detail
    assert [name for name, _ in outcome.phases] == ["connect", "processing", "transfer"]


@pytest.mark.parametrize("family", ADDRESSES)
async def test_health_check_method_sends_what_the_alb_sends(family: str) -> None:
    """The configured path is called with content-type application/grpc and an empty message."""
    ip, bind = address_of(family)
    recorded = Recorded()
    with grpc_server(bind, [health_servicer(SERVING, recorded)]) as port:
        outcome = await probe_grpc(grpc_request(ip, port, codes="0", path=HEALTH_CHECK))
    assert outcome.success and outcome.grpc_status == 0, outcome.detail
    [(path, message, metadata)] = recorded.calls
    assert path == HEALTH_CHECK and message == b""
    assert metadata["user-agent"].startswith("ELB-HealthChecker/2.0")


async def test_status_not_in_matcher_is_a_code_mismatch(ip: str) -> None:
    """An implemented method answers 0, but the target group still expects the default 12."""
    with grpc_server(ip, [health_servicer(SERVING, Recorded())]) as port:
        outcome = await probe_grpc(grpc_request(ip, port, codes="12", path=HEALTH_CHECK))
    assert not outcome.success
    assert outcome.reason is Reason.RESPONSE_CODE_MISMATCH and outcome.grpc_status == 0
    assert outcome.detail == "gRPC status 0 (OK), expected 12"


async def test_only_the_status_counts_not_the_message(ip: str) -> None:
    """NOT_SERVING in the message with grpc-status 0 is healthy for the ALB, and so for lbdoctor."""
    with grpc_server(ip, [health_servicer(NOT_SERVING, Recorded())]) as port:
        outcome = await probe_grpc(grpc_request(ip, port, codes="0", path=HEALTH_CHECK))
    assert outcome.success and outcome.grpc_status == 0


@pytest.mark.parametrize("family", ADDRESSES)
async def test_error_status_from_the_server(family: str) -> None:
    ip, bind = address_of(family)
    handler = health_servicer(SERVING, Recorded(), code=grpc.StatusCode.UNAVAILABLE)
    with grpc_server(bind, [handler]) as port:
        outcome = await probe_grpc(grpc_request(ip, port, codes="0-5", path=HEALTH_CHECK))
    assert outcome.reason is Reason.RESPONSE_CODE_MISMATCH and outcome.grpc_status == 14
    assert outcome.detail == "gRPC status 14 (UNAVAILABLE), expected 0-5"  # the server's grpc-message is not echoed


async def test_tls_target_group_speaks_h2_over_tls(ip: str, tmp_path: Path) -> None:
    """An HTTPS target group: TLS with ALPN h2, the certificate not verified."""
    require_tool("openssl")
    key, cert = self_signed_files(tmp_path)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    with grpc_server(ip, [health_servicer(SERVING, Recorded())], credentials) as port:
        outcome = await probe_grpc(grpc_request(ip, port, codes="0", path=HEALTH_CHECK, protocol="HTTPS"))
        plain = await probe_grpc(grpc_request(ip, port, codes="0", path=HEALTH_CHECK))
    assert outcome.success, outcome.detail
    assert [name for name, _ in outcome.phases][:2] == ["connect", "tls"]
    assert not plain.success  # h2c to a TLS port is not an answer
    assert plain.reason in (Reason.INVALID_RESPONSE, Reason.CONNECTION_RESET)


@pytest.mark.parametrize("family", ADDRESSES)
async def test_refused(family: str) -> None:
    ip = "::1" if family == "ipv6" else next_ip()
    outcome = await probe_grpc(grpc_request(ip, unused_port(ip)))
    assert outcome.reason is Reason.CONNECTION_REFUSED


async def test_http1_server_is_not_a_grpc_answer(ip: str) -> None:
    async with Server(ip, respond(200)) as server:
        outcome = await probe_grpc(grpc_request(ip, server.port))
    assert not outcome.success and outcome.reason is Reason.INVALID_RESPONSE
    assert outcome.detail.startswith("invalid gRPC response")


async def test_slow_server_times_out(ip: str) -> None:
    def check(request: bytes, context: grpc.ServicerContext) -> bytes:
        time.sleep(1.5)
        return SERVING

    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)}
    )
    with grpc_server(ip, [handler]) as port:
        started = time.monotonic()
        outcome = await probe_grpc(grpc_request(ip, port, codes="0", path=HEALTH_CHECK, timeout=0.5))
    assert outcome.reason is Reason.TIMEOUT
    assert time.monotonic() - started < 1.2


# Hand-made HTTP/2 servers ------------------------------------------------------------------------



@contextlib.asynccontextmanager
async def h2_server(ip: str, answer: Callable[[h2.connection.H2Connection, int], list[bytes]]) -> AsyncIterator[Any]:
    """An h2c server that, once the request's stream ends, writes the chunks ``answer`` returns."""
    state: dict[str, int] = {"connections": 0, "sent": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state["connections"] += 1
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.StreamEnded):
                        for chunk in answer(conn, event.stream_id):
                            writer.write(chunk)
                            state["sent"] += len(chunk)
                            await writer.drain()
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, ip, 0)
    state["port"] = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)


async def test_status_in_headers_of_a_trailers_only_answer(ip: str) -> None:
    def answer(conn: h2.connection.H2Connection, stream: int) -> list[bytes]:
        conn.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "5")],
                          end_stream=True)
        return [conn.data_to_send()]

    async with h2_server(ip, answer) as server:
        outcome = await probe_grpc(grpc_request(ip, server["port"], codes="5"))
        again = await probe_grpc(grpc_request(ip, server["port"], codes="5"))
    assert outcome.success and outcome.grpc_status == 5 and again.success
    assert server["connections"] == 2  # a new connection per check, as the LB does


async def test_answer_without_grpc_status_is_invalid(ip: str) -> None:
    def answer(conn: h2.connection.H2Connection, stream: int) -> list[bytes]:
        conn.send_headers(stream, [(":status", "404")], end_stream=True)
        return [conn.data_to_send()]

    async with h2_server(ip, answer) as server:
        outcome = await probe_grpc(grpc_request(ip, server["port"]))
    assert outcome.reason is Reason.INVALID_RESPONSE and outcome.status_code == 404
    assert "without a grpc-status" in outcome.detail


async def test_reset_stream_is_invalid(ip: str) -> None:
    def answer(conn: h2.connection.H2Connection, stream: int) -> list[bytes]:
        conn.reset_stream(stream, error_code=11)
        return [conn.data_to_send()]

    async with h2_server(ip, answer) as server:
        outcome = await probe_grpc(grpc_request(ip, server["port"]))
    assert outcome.reason is Reason.INVALID_RESPONSE and "reset the stream" in outcome.detail


async def test_endless_body_costs_a_bounded_read(ip: str) -> None:
    """A target streaming data forever is cut off after the byte cap, quickly, with a clear reason."""

    def answer(conn: h2.connection.H2Connection, stream: int) -> list[bytes]:
        conn.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc")])
        # Raw DATA frames, 4 KiB each, far more than the client reads (its window is replenished as it reads).
        frame = hyperframe.frame.DataFrame(stream, data=b"\x00" * 4096).serialize()
        return [conn.data_to_send(), *([frame] * 400)]

    async with h2_server(ip, answer) as server:
        started = time.monotonic()
        outcome = await probe_grpc(grpc_request(ip, server["port"], body_limit=16384))
    # Past the window it advertised (or past its byte cap), the prober stops reading: either way, quickly.
    assert outcome.reason is Reason.INVALID_RESPONSE
    assert "Flow control window" in outcome.detail or "more than" in outcome.detail, outcome.detail
    assert time.monotonic() - started < 2.0


async def test_header_blocks_are_limited(ip: str) -> None:
    """Interim answers repeated without end do not keep the prober busy."""

    def answer(conn: h2.connection.H2Connection, stream: int) -> list[bytes]:
        chunks = []
        for _ in range(50):
            conn.send_headers(stream, [(":status", "100")])
            chunks.append(conn.data_to_send())
        return chunks

    async with h2_server(ip, answer) as server:
        outcome = await probe_grpc(grpc_request(ip, server["port"]))
    assert outcome.reason is Reason.INVALID_RESPONSE and "header blocks" in outcome.detail


async def test_header_bomb_is_refused(ip: str) -> None:
    """A header block inflating beyond 16 KiB is refused by the decoder's limit, not decoded."""

    def answer(conn: h2.connection.H2Connection, stream: int) -> list[bytes]:
        conn.send_headers(stream, [(":status", "200"), *((f"x-pad-{i}", "y" * 1000) for i in range(40))])
        return [conn.data_to_send()]

    async with h2_server(ip, answer) as server:
        outcome = await probe_grpc(grpc_request(ip, server["port"]))
    assert outcome.reason is Reason.INVALID_RESPONSE and "HTTP/2" in outcome.detail


def test_grpc_is_a_prober_of_its_own() -> None:
    assert PROBERS["GRPC"] is probe_grpc
    assert grpc_request("127.0.0.1", 1).kind == "GRPC"
    assert ProbeRequest("HTTP", "127.0.0.1", 1, 1.0).kind == "HTTP"


def test_grpc_states_cross_between_the_roles() -> None:
    """A node agent's gRPC probe state reads back in the cluster role; a forged protocol version is refused."""
    from exporter.lb.targets import ProbeTarget, TargetStatus
    from exporter.model.probe import ProbeOutcome
    from exporter.model.results import ObjectRef
    from exporter.report import parse_targets, targets_json

    target = ProbeTarget(
        ObjectRef("Ingress", "shop", "pricing"), "shop", "pricing", "pricing-1", "node-a", "alb",
        grpc_request("10.0.0.5", 8080, codes="0"), 5.0, 2, 2,
    )
    outcome = ProbeOutcome(False, Reason.RESPONSE_CODE_MISMATCH, 0.01, 200, detail="gRPC status 12", grpc_status=12)
    [row] = targets_json([TargetStatus(target, outcome, probed_at=1000.0)])
    parsed = parse_targets([row])
    [back] = parsed.statuses
    assert back.target.request.kind == "GRPC" and back.outcome is not None and back.outcome.grpc_status == 12
    forged = {**row, "protocol_version": "x" * 5000}
    assert parse_targets([forged]).rejected == 1
