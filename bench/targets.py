"""N tiny HTTP "pods" on distinct loopback addresses, served from a separate process.

The benchmarks count a prober's CPU only; the target servers live in their own process so their
cost is charged to neither side. Each address gets one listening socket on the same port (like pods
that all listen on 8080), and every connection gets one fixed 200 answer and a close.

Run alone:   python -m bench.targets --count 1000      (prints the port, serves until Ctrl-C)
From Python: ``with TargetFleet(1000) as fleet: fleet.addresses``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from types import TracebackType

FIRST_OCTET = 127
SECOND_OCTET = 1  # 127.1.x.y: away from 127.0.0.x, which the tests and the demo use
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"


def address(index: int) -> str:
    """The index-th target address: 127.1.0.1, 127.1.0.2, ... 127.1.0.250, 127.1.1.1, ..."""
    return f"{FIRST_OCTET}.{SECOND_OCTET + index // 62_500}.{index // 250 % 250}.{index % 250 + 1}"


def addresses(count: int) -> list[str]:
    return [address(i) for i in range(count)]


class _Answer(asyncio.Protocol):
    """Answers once the request head is in, then closes: the cheapest honest HTTP/1.1 server."""

    __slots__ = ("_buffer", "_transport")

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if b"\r\n\r\n" in self._buffer and self._transport is not None:
            self._transport.write(RESPONSE)
            self._transport.close()
            self._transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


def _bind_all(ips: list[str], port: int) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    try:
        for ip in ips:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, port))
            sock.listen(1024)
            sock.setblocking(False)
            sockets.append(sock)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def bind_fleet(count: int, port: int = 0) -> tuple[int, list[socket.socket]]:
    """Bind ``count`` addresses on one port; with port 0, try random high ports until one is free on all."""
    ips = addresses(count)
    if port:
        return port, _bind_all(ips, port)
    for _ in range(50):
        candidate = random.randint(20_000, 32_000)  # below the ephemeral range, so clients never hold it
        with contextlib.suppress(OSError):
            return candidate, _bind_all(ips, candidate)
    raise OSError("no port free on every target address")


async def _serve(count: int, port: int) -> None:
    loop = asyncio.get_running_loop()
    bound, sockets = bind_fleet(count, port)
    servers = [await loop.create_server(_Answer, sock=sock, backlog=1024) for sock in sockets]
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"READY {bound} {count}", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


class TargetFleet:
    """Runs ``python -m bench.targets`` as a child process; ``addresses`` are its (ip, port) targets."""

    def __init__(self, count: int, port: int = 0) -> None:
        self.count = count
        self.port = port
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> TargetFleet:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.targets", "--count", str(self.count), "--port", str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().split()
        if not line or line[0] != "READY":
            self.__exit__(None, None, None)
            raise RuntimeError("the target fleet did not start")
        self.port = int(line[1])
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(ip, self.port) for ip in addresses(self.count)]

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


# --- process measurements shared by the benchmarks ---------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mib(pid: int) -> tuple[float, float]:
    """Current and peak resident set size of a process, in MiB."""
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def machine_note() -> str:
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} at start, "
        f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )


@contextlib.contextmanager
def raised_fd_limit() -> Iterator[None]:
    """Thousands of sockets need more than the common 1024 descriptors."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="number of target addresses")
    parser.add_argument("--port", type=int, default=0, help="port on every address (0: pick a free one)")
    args = parser.parse_args()
    with raised_fd_limit(), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.count, args.port))


if __name__ == "__main__":
    main()
