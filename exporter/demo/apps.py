"""The demo's "pods": tiny HTTP servers on 127.0.0.0/8 addresses, each with a behaviour from the runbook."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

_REASONS = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Behaviour:
    """How an app answers: which paths exist, how slowly, and whether it flaps between healthy and failing."""

    paths: frozenset[str] = frozenset({"/", "/healthz", "/health", "/ready"})
    delay: float = 0.0
    flap_period: float = 0.0  # >0: healthy for the first half of each period, 500 for the second
    started: float = field(default_factory=time.monotonic)

    def answer(self, path: str) -> int:
        if self.flap_period and (time.monotonic() - self.started) % self.flap_period >= self.flap_period / 2:
            return 500
        return 200 if path.split("?", 1)[0] in self.paths else 404


class App:
    def __init__(self, ip: str, port: int, behaviour: Behaviour) -> None:
        self.ip, self.port, self.behaviour = ip, port, behaviour
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.ip, self.port)

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
