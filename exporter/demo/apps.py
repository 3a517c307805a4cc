"""The demo's "pods": tiny HTTP (or gRPC) servers on 127.0.0.0/8 addresses, each with a behaviour from the runbook."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions

_REASONS = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Behaviour:
    """How an app answers: which paths exist, how slowly, and whether it flaps between healthy and failing."""

    paths: frozenset[str] = frozenset({"/", "/healthz", "/health", "/ready"})
    delay: float = 0.0
    flap_period: float = 0.0  # >0: healthy for the first half of each period, 500 for the second
    started: float = field(default_factory=time.monotonic)
    # A gRPC server (HTTP/2 cleartext) implementing only these methods; others answer grpc-status 12.
    grpc_methods: frozenset[str] | None = None

    def answer(self, path: str) -> int:
        if self.flap_period and (time.monotonic() - self.started) % self.flap_period >= self.flap_period / 2:
            return 500
        return 200 if path.split("?", 1)[0] in self.paths else 404


class App:
    def __init__(self, ip: str, port: int, behaviour: Behaviour) -> None:
        self.ip, self.port, self.behaviour = ip, port, behaviour
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        handler = self._handle if self.behaviour.grpc_methods is None else self._handle_grpc
        self._server = await asyncio.start_server(handler, self.ip, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            parts = head.split(b"\r\n", 1)[0].split()
            path = parts[1].decode("latin-1") if len(parts) > 1 else "/"
            if self.behaviour.delay:
                await asyncio.sleep(self.behaviour.delay)
            code = self.behaviour.answer(path)
            body = f"{code} {_REASONS.get(code, '')}\n".encode()
            writer.write(
                f"HTTP/1.1 {code} {_REASONS.get(code, '')}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # Shutdown while a slow answer is pending. Ending normally, not re-raising, because
            # Python 3.11's stream callback logs a traceback for a handler task that was cancelled.
            pass
        finally:
            writer.close()

    async def _handle_grpc(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A gRPC server's answers, as grpc-go or grpcio give them: a trailers-only UNIMPLEMENTED for an unknown
        method, a HealthCheckResponse{SERVING} with status 0 for an implemented one."""
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        methods = self.behaviour.grpc_methods or frozenset()
        paths: dict[int, str] = {}
        received = 0
        try:
            while data := await asyncio.wait_for(reader.read(65536), 5.0):
                received += len(data)
                if received > 1 << 20:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        found = [value for name, value in event.headers or [] if name in (":path", b":path")]
                        paths[event.stream_id] = str(found[0]) if found else ""
                    elif isinstance(event, h2.events.StreamEnded):
                        self._grpc_answer(conn, event.stream_id, paths.get(event.stream_id, ""), methods)
                writer.write(conn.data_to_send())
                await writer.drain()
        except (TimeoutError, ConnectionError, h2.exceptions.ProtocolError):
            pass
        except asyncio.CancelledError:
            pass  # shutdown; see _handle
        finally:
            writer.close()

    @staticmethod
    def _grpc_answer(conn: h2.connection.H2Connection, stream: int, path: str, methods: frozenset[str]) -> None:
        if path not in methods:
            conn.send_headers(
                stream,
                [
                    (":status", "200"),
                    ("content-type", "application/grpc"),
                    ("grpc-status", "12"),
                    ("grpc-message", "unknown method"),
                ],
                end_stream=True,
            )
            return
        conn.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc")])
        conn.send_data(stream, b"\x00\x00\x00\x00\x02\x08\x01")  # HealthCheckResponse{status: SERVING}
        conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)
