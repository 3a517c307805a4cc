"""Real TCP/HTTP servers on loopback addresses, one misbehaviour each, for the prober tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    def __init__(self, ip: str, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.ip = ip
        self.port = 0
        self.requests: list[bytes] = []
        self._handler = handler
        self._tls = tls
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await self._handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        self._server = await asyncio.start_server(handle, self.ip, 0, ssl=self._tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1)


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def http_response(code: int, body: bytes = b"ok", extra: str = "") -> bytes:
    return f"HTTP/1.1 {code} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def respond(code: int, body: bytes = b"ok", record: list[bytes] | None = None, delay: float = 0.0) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        if record is not None:
            record.append(head)
        if delay:
            await asyncio.sleep(delay)
        writer.write(http_response(code, body))
        await writer.drain()

    return handler


def self_signed_context(workdir: Path) -> ssl.SSLContext:
    """A server TLS context with a throwaway self-signed certificate made by openssl."""
    key, cert = self_signed_files(workdir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def self_signed_files(workdir: Path) -> tuple[Path, Path]:
    """A throwaway key and self-signed certificate (PEM files) made by openssl."""
    key, cert = workdir / "key.pem", workdir / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=pod.local",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


def unused_port(ip: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET) as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])
