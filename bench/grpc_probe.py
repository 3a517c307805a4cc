"""gRPC health-check cost: lbdoctor's prober (HTTP/2 framing by ``h2``, on asyncio) vs grpcio's client.

One run, same server, same machine:
  * a grpcio server on loopback in a child process (not counted) that does not implement
    ``/AWS.ALB/healthcheck`` (so it answers 12, UNIMPLEMENTED: healthy by the ALB's default) and
    implements ``/grpc.health.v1.Health/Check``;
  * lbdoctor's ``probe_grpc``, CONCURRENCY probes at a time, a new connection each, as the ALB does;
  * the reference: grpcio's client as ``grpc_health_probe`` uses it, a new channel per check
    (``grpc.insecure_channel`` + one unary call + close), on a thread pool of CONCURRENCY;
  * what a hostile target costs: a server answering with endless DATA frames, probed the same way;
  * what importing each costs the node agent's memory (RSS of a fresh interpreter after the import).
CPU is this process's (all threads) over the probes of each part; numbers per 1,000 checks.

    .venv/bin/python -m bench.grpc_probe              # 2,000 checks per part
    .venv/bin/python -m bench.grpc_probe --checks 500
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent import futures

from bench.targets import machine_note

CONCURRENCY = 50
HOSTILE_CONCURRENCY = 10


def _serve(port_queue: multiprocessing.Queue[int]) -> None:
    import grpc

    def check(request: bytes, context: grpc.ServicerContext) -> bytes:
        return b"\x08\x01"

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handler = grpc.unary_unary_rpc_method_handler(check)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port_queue.put(port)
    server.wait_for_termination()


def _hostile(port_queue: multiprocessing.Queue[int]) -> None:
    """An HTTP/2 server answering every request with headers and then DATA frames without end."""
    import h2.config
    import h2.connection
    import h2.events
    import hyperframe.frame

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.StreamEnded):
                        conn.send_headers(event.stream_id, [(":status", "200"), ("content-type", "application/grpc")])
                        writer.write(conn.data_to_send())
                        frame = hyperframe.frame.DataFrame(event.stream_id, data=b"\0" * 1024).serialize()
                        for _ in range(4096):
                            writer.write(frame)
                            await writer.drain()
                writer.write(conn.data_to_send())
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_queue.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def _start(target: Callable[[multiprocessing.Queue[int]], None]) -> tuple[multiprocessing.Process, int]:
    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    process = multiprocessing.Process(target=target, args=(queue,), daemon=True)
    process.start()
    return process, queue.get(timeout=30)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _lbdoctor(
    port: int, checks: int, concurrency: int, path: str, codes: tuple[int, int]
) -> tuple[float, float, int]:
    from exporter.model.probe import ProbeRequest
    from exporter.probes.grpc import probe_grpc

    request = ProbeRequest("HTTP", "127.0.0.1", port, 5.0, path=path, success_ranges=(codes,), protocol_version="GRPC")
    semaphore = asyncio.Semaphore(concurrency)
    passed = 0

    async def one() -> None:
        nonlocal passed
        async with semaphore:
            outcome = await probe_grpc(request)
            passed += outcome.success

    started, cpu = time.perf_counter(), _cpu()
    await asyncio.gather(*(one() for _ in range(checks)))
    return time.perf_counter() - started, _cpu() - cpu, passed


def _grpcio(port: int, checks: int, concurrency: int) -> tuple[float, float, int]:
    import grpc

    def one(_: int) -> bool:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        try:
            call = channel.unary_unary("/AWS.ALB/healthcheck")
            try:
                call(b"", timeout=5)
            except grpc.RpcError as error:
                return bool(error.code() == grpc.StatusCode.UNIMPLEMENTED)
            return False
        finally:
            channel.close()

    started, cpu = time.perf_counter(), _cpu()
    with futures.ThreadPoolExecutor(concurrency) as pool:
        passed = sum(pool.map(one, range(checks)))
    return time.perf_counter() - started, _cpu() - cpu, passed


def _import_rss(module: str) -> float:
    """MiB of resident memory importing ``module`` adds to an interpreter that imported asyncio and ssl (median of 7)."""
    prelude = "import os, asyncio, ssl"
    report = "; print(int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGESIZE') // 1024)"

    def rss(code: str) -> int:
        done = subprocess.run([sys.executable, "-c", code + report], capture_output=True, text=True, check=True)
        return int(done.stdout)

    deltas = sorted(rss(f"{prelude}, {module}") - rss(prelude) for _ in range(7))
    return deltas[3] / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=2000)
    args = parser.parse_args()
    server, port = _start(_serve)
    hostile, hostile_port = _start(_hostile)
    try:
        asyncio.run(_lbdoctor(port, 100, CONCURRENCY, "/AWS.ALB/healthcheck", (12, 12)))  # warm-up
        _grpcio(port, 100, CONCURRENCY)
        rows = []
        wall, cpu, passed = asyncio.run(_lbdoctor(port, args.checks, CONCURRENCY, "/AWS.ALB/healthcheck", (12, 12)))
        rows.append(("lbdoctor probe_grpc (h2), default check, status 12", wall, cpu, passed))
        wall, cpu, passed = asyncio.run(
            _lbdoctor(port, args.checks, CONCURRENCY, "/grpc.health.v1.Health/Check", (0, 0))
        )
        rows.append(("lbdoctor probe_grpc (h2), Health/Check, status 0", wall, cpu, passed))
        wall, cpu, passed = _grpcio(port, args.checks, CONCURRENCY)
        rows.append(("grpcio client, a channel per check (reference)", wall, cpu, passed))
        hostile_checks = max(args.checks // 10, 50)
        wall, cpu, passed = asyncio.run(
            _lbdoctor(hostile_port, hostile_checks, HOSTILE_CONCURRENCY, "/AWS.ALB/healthcheck", (12, 12))
        )
        rows.append(("lbdoctor probe_grpc vs a target streaming 4 MiB per answer", wall, cpu, passed))
    finally:
        server.kill()
        hostile.kill()
    print(machine_note())
    print(f"checks per part: {args.checks} (hostile: {max(args.checks // 10, 50)}), concurrency {CONCURRENCY}")
    print(f"{'part':<62} {'checks/s':>9} {'CPU ms/1000':>12} {'passed':>7}")
    counts = [args.checks, args.checks, args.checks, max(args.checks // 10, 50)]
    for (name, wall, cpu, passed), count in zip(rows, counts, strict=True):
        print(f"{name:<62} {count / wall:>9.0f} {cpu / count * 1e6:>12.0f} {passed:>7}")
    reference = rows[2][2] / counts[2]
    print(f"CPU per check, lbdoctor / grpcio: {rows[0][2] / counts[0] / reference:.2f}")
    print(
        f"RSS added by importing (median of 7): h2 (what lbdoctor's prober adds) {_import_rss('h2.connection'):.1f} MiB, "
        f"grpc {_import_rss('grpc'):.1f} MiB"
    )


if __name__ == "__main__":
    main()
