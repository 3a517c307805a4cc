"""Probe cost: CPU-seconds per 1,000 HTTP health checks, lbdoctor vs prometheus-blackbox-exporter.

One run, all at once, over the same window and the same targets:
  * a target fleet: N HTTP servers on distinct loopback addresses, in their own process (not counted);
  * blackbox_exporter (Debian's binary), asked ``/probe?target=...&module=http_lb`` for every target
    every INTERVAL seconds by a load driver in this process (not counted), over keep-alive
    connections as Prometheus scrapes it;
  * lbdoctor's probe engine in a child process: the real ``ProbeScheduler`` with the real probers
    and the real self-metrics telemetry, every target every INTERVAL seconds;
  * (unless --no-daemon) the real node agent, ``lbdoctor run --role node``, against a fake API server
    in this process holding N load-balanced pods at the same addresses: watches, evaluation,
    publication and all.
Each prober's CPU is read from /proc/<pid>/stat (all threads) at the start and end of the window,
after a warm-up of one interval plus a few seconds, and divided by the probes it completed in it.

    .venv/bin/python -m bench.probe_cost                 # 1,000 targets, 5 s interval, 60 s window
    .venv/bin/python -m bench.probe_cost --targets 200 --seconds 20 --no-daemon   # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench.targets import TargetFleet, cpu_seconds, machine_note, raised_fd_limit

BLACKBOX = shutil.which("prometheus-blackbox-exporter") or "/usr/bin/prometheus-blackbox-exporter"

# The ALB health check as blackbox_exporter expresses it: GET, HTTP/1.1, no redirects, the LB's
# User-Agent, 200 only, no certificate verification, IPv4, the 2 s timeout the targets are given.
BLACKBOX_CONFIG = """\
modules:
  http_lb:
    prober: http
    timeout: 2s
    http:
      method: GET
      valid_status_codes: [200]
      follow_redirects: false
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      headers:
        User-Agent: ELB-HealthChecker/2.0
      tls_config:
        insecure_skip_verify: true
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the lbdoctor side, in a child process -----------------------------------------------------


async def _engine(count: int, port: int, interval: float, concurrency: int) -> None:
    """The child: the real scheduler and probers against the fleet; answers 'count' on stdin."""
    from bench.targets import addresses
    from exporter import logs
    from exporter.lb.targets import ProbeTarget
    from exporter.metrics.selfmetrics import SelfMetrics
    from exporter.model.probe import ProbeRequest
    from exporter.model.results import ObjectRef
    from exporter.probes import PROBERS
    from exporter.scheduler import ProbeScheduler

    logs.configure("json", "warning")
    metrics = SelfMetrics("node")
    scheduler = ProbeScheduler(PROBERS, metrics, concurrency=concurrency, min_interval=min(interval, 5.0))
    scheduler.set_targets(
        ProbeTarget(
            owner=ObjectRef("Service", "bench", "web"),
            namespace="bench",
            service="web",
            pod=f"web-{index}",
            node="bench-node",
            lb="alb",
            request=ProbeRequest("HTTP", ip, port, timeout=2.0, path="/healthz", success_ranges=((200, 200),)),
            interval=interval,
            healthy_threshold=2,
            unhealthy_threshold=2,
        )
        for index, ip in enumerate(addresses(count))
    )
    runner = asyncio.create_task(scheduler.run())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"count":
            ok = metrics.registry.get_sample_value("lbdoctor_probes_total", {"lb": "alb", "result": "success"})
            failed = metrics.registry.get_sample_value("lbdoctor_probes_total", {"lb": "alb", "result": "failure"})
            print(json.dumps({"ok": ok or 0.0, "failed": failed or 0.0}), flush=True)
    runner.cancel()
    await scheduler.close()


# --- probers as the parent sees them -----------------------------------------------------------


@dataclass
class Counts:
    ok: float = 0
    failed: float = 0


class Prober:
    name = ""

    @property
    def pid(self) -> int:
        raise NotImplementedError

    async def counts(self) -> Counts:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class Engine(Prober):
    name = "lbdoctor probe engine (scheduler + HTTP prober)"

    def __init__(self, count: int, port: int, interval: float, concurrency: int) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.probe_cost",
                "--engine",
                f"{count},{port},{interval},{concurrency}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    async def counts(self) -> Counts:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        line = await asyncio.to_thread(self.process.stdout.readline)
        data = json.loads(line)
        return Counts(data["ok"], data["failed"])

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            assert self.process.stdin is not None
            self.process.stdin.close()
        _end(self.process)


class Daemon(Prober):
    name = "lbdoctor node agent (lbdoctor run --role node)"

    def __init__(self, command: list[str], listen_port: int) -> None:
        self.url = f"http://127.0.0.1:{listen_port}/metrics"
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def counts(self) -> Counts:
        from bench.cluster import scrape_text

        text = await scrape_text(self.url)
        ok = failed = 0.0
        for line in text.splitlines():
            if line.startswith("lbdoctor_probes_total{"):
                value = float(line.rsplit(" ", 1)[1])
                if 'result="success"' in line:
                    ok += value
                else:
                    failed += value
        return Counts(ok, failed)

    def stop(self) -> None:
        _end(self.process)


class Blackbox(Prober):
    name = "prometheus-blackbox-exporter (/probe, http module)"

    def __init__(self, workdir: Path) -> None:
        config = workdir / "blackbox.yml"
        config.write_text(BLACKBOX_CONFIG)
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                BLACKBOX,
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.ok = 0
        self.failed = 0
        self.errors = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    async def counts(self) -> Counts:
        return Counts(self.ok, self.failed)

    async def drive(self, targets: list[tuple[str, int]], interval: float, stop: asyncio.Event) -> None:
        """Prometheus's part: each target's /probe every interval, offsets spread over the interval."""
        import aiohttp

        connector = aiohttp.TCPConnector(limit=256)
        headers = {"X-Prometheus-Scrape-Timeout-Seconds": "4"}
        base = f"http://127.0.0.1:{self.port}/probe"
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

            async def one(ip: str, port: int, offset: float) -> None:
                params = {"module": "http_lb", "target": f"http://{ip}:{port}/healthz"}
                await asyncio.sleep(offset)
                loop = asyncio.get_running_loop()
                due = loop.time()
                while not stop.is_set():
                    try:
                        async with session.get(base, params=params) as response:
                            body = await response.text()
                        if "\nprobe_success 1" in body:
                            self.ok += 1
                        else:
                            self.failed += 1
                    except (aiohttp.ClientError, TimeoutError):
                        self.errors += 1
                    due += interval
                    await asyncio.sleep(max(due - loop.time(), 0))

            await asyncio.gather(
                *(one(ip, port, random.uniform(0, interval)) for ip, port in targets), return_exceptions=True
            )

    def stop(self) -> None:
        _end(self.process)


def _end(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(8)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if await check():
                return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


@dataclass
class Row:
    name: str
    pid: int
    cpu: float
    ok: float
    failed: float

    @property
    def probes(self) -> float:
        return self.ok + self.failed

    @property
    def per_thousand(self) -> float:
        return self.cpu / self.probes * 1000 if self.probes else float("nan")


async def measure(args: argparse.Namespace) -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="lbdoctor-probe-cost-"))
    stop = asyncio.Event()
    probers: list[Prober] = []
    api = None
    with TargetFleet(args.targets) as fleet:
        blackbox = Blackbox(workdir)
        engine = Engine(args.targets, fleet.port, args.interval, args.concurrency)
        probers += [blackbox, engine]
        daemon: Daemon | None = None
        try:
            if not args.no_daemon:
                from bench.cluster import daemon_command, start_api

                api, kubeconfig = await start_api(args.targets, fleet.port, int(args.interval))
                listen_port = free_port()
                daemon = Daemon(daemon_command(kubeconfig, f"127.0.0.1:{listen_port}"), listen_port)
                probers.append(daemon)

                async def daemon_probing() -> bool:
                    assert daemon is not None
                    counts = await daemon.counts()
                    return counts.ok + counts.failed > 0

                await _wait_until(daemon_probing, 60, "the node agent's first probes")
            await asyncio.sleep(1)  # blackbox_exporter is listening by now
            driver = asyncio.create_task(blackbox.drive(fleet.addresses, args.interval, stop))
            warmup = args.interval + args.warmup
            print(f"warming up for {warmup:.0f} s, then measuring for {args.seconds:.0f} s ...", file=sys.stderr)
            await asyncio.sleep(warmup)
            before = {p.pid: (cpu_seconds(p.pid), await p.counts()) for p in probers}
            await asyncio.sleep(args.seconds)
            after = {p.pid: (cpu_seconds(p.pid), await p.counts()) for p in probers}
            stop.set()
            rows = []
            for prober in probers:
                cpu0, c0 = before[prober.pid]
                cpu1, c1 = after[prober.pid]
                rows.append(Row(prober.name, prober.pid, cpu1 - cpu0, c1.ok - c0.ok, c1.failed - c0.failed))
            if blackbox.errors:
                print(f"note: {blackbox.errors} /probe requests failed at the HTTP level", file=sys.stderr)
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver
            return rows
        finally:
            for prober in probers:
                prober.stop()
            if api is not None:
                await api.stop()
            shutil.rmtree(workdir, ignore_errors=True)


def report(rows: list[Row], args: argparse.Namespace, note: str) -> None:
    reference = rows[0].per_thousand
    print()
    print(f"Probe cost: {args.targets} HTTP targets, each probed every {args.interval:g} s, {args.seconds:g} s window")
    print(f"({note}; absolute numbers drift with machine load, the ratios are the result)")
    print()
    header = f"{'prober':<52} {'probes':>7} {'ok %':>6} {'CPU s':>7} {'CPU s/1000 probes':>18} {'vs blackbox':>12}"
    print(header)
    print("-" * len(header))
    for row in rows:
        ok = 100 * row.ok / row.probes if row.probes else 0.0
        print(
            f"{row.name:<52} {row.probes:>7.0f} {ok:>6.1f} {row.cpu:>7.2f} {row.per_thousand:>18.3f} "
            f"{row.per_thousand / reference:>11.2f}x"
        )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--engine":
        count, port, interval, concurrency = sys.argv[2].split(",")
        with raised_fd_limit():
            asyncio.run(_engine(int(count), int(port), float(interval), int(concurrency)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between probes of one target")
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=5.0, help="extra warm-up after one interval")
    parser.add_argument("--concurrency", type=int, default=200, help="lbdoctor's probe concurrency (its default)")
    parser.add_argument("--no-daemon", action="store_true", help="skip the full node agent")
    args = parser.parse_args()
    if not os.path.exists(BLACKBOX):
        sys.exit("prometheus-blackbox-exporter is not installed (Debian: apt-get install prometheus-blackbox-exporter)")
    note = machine_note()
    with raised_fd_limit():
        rows = asyncio.run(measure(args))
    report(rows, args, note)


if __name__ == "__main__":
    main()
