"""Benchmark: parse and compare one node's kube-proxy rules at scale (docs/performance.md, "kube-proxy rules").

    .venv/bin/python -m bench.kube_proxy_rules [--services 10000] [--endpoints 10] [--repeat 3] [--nft-services 2000]

Measures, for N Services with M endpoints each (10,000 x 10 gives the ~430,000-line dump of
docs/kube-proxy.md §11):
- parse + expected state + compare of the ``iptables-save`` text (the work the node agent does off the
  event loop each round): wall time (median of --repeat), lines per second, peak traced memory;
- the event loop's worst lateness while that work runs in a worker thread, as the agent runs it;
- as root: the time ``iptables-save`` itself takes to print the same rules, loaded with
  ``iptables-restore`` into a throwaway network namespace (legacy and nft backends), and lbdoctor's
  reader end to end; and the nftables mode (``nft -f`` then ``nft -j list table``) at --nft-services.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import resource
import statistics
import subprocess
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from exporter.dataplane.analysis import Analysis
from exporter.dataplane.monitor import analyse_in_worker
from exporter.dataplane.readers import IPTABLES, NFTABLES, DataplaneReader, RawRules, Runner
from exporter.dataplane.report import RulesState
from exporter.model.snapshot import ClusterSnapshot
from tests.dataplane.generator import NODE, iptables_restore, iptables_save, kubelet_hint, many, nft_script, snapshot


def require_clean(analysis: Analysis) -> None:
    """The benchmark's rules match its cluster: anything else means the benchmark measures the wrong thing."""
    if analysis.state is not RulesState.COMPARED or analysis.findings:
        raise SystemExit(f"unexpected analysis: {analysis.state} {analysis.detail} {analysis.findings[:3]}")


def analyse_text(cluster: ClusterSnapshot, data: bytes) -> Analysis:
    """Exactly what the node agent's worker thread does with one read: decode, parse, expect, compare."""
    return analyse_in_worker(RawRules(IPTABLES, "nft", {"IPv4": data}), cluster, NODE)


def timed(work: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    runs = []
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        work()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), runs


def peak_memory(work: Callable[[], object]) -> float:
    gc.collect()
    tracemalloc.start()
    work()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


async def loop_lateness(work: Callable[[], object], tick: float = 0.005) -> tuple[float, float]:
    """Run ``work`` in a worker thread (as the agent does) while a ticker measures how late it wakes."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            started = loop.time()
            await asyncio.sleep(tick)
            late.append(loop.time() - started - tick)

    task = asyncio.create_task(ticker())
    await asyncio.to_thread(work)
    done.set()
    await task
    late.sort()
    return late[-1] * 1000, late[int(len(late) * 0.99)] * 1000


@contextmanager
def namespace(name: str) -> Iterator[list[str]]:
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def run(prefix: list[str], argv: list[str], stdin: str | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([*prefix, *argv], input=stdin, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nft-services", type=int, default=2_000)
    args = parser.parse_args()

    services = many(args.services, args.endpoints)
    cluster = snapshot(services)
    text = iptables_save(services)
    data = text.encode()
    lines = text.count("\n")
    print(f"# kube-proxy rules benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"dump: {args.services} Services x {args.endpoints} endpoints = {lines} lines, {len(text) / 2**20:.1f} MiB")

    analysis = analyse_text(cluster, data)
    require_clean(analysis)
    median, runs = timed(lambda: analyse_text(cluster, data), args.repeat)
    print(
        f"parse+compare: {median:.2f} s median ({', '.join(f'{r:.2f}' for r in runs)}), {lines / median:,.0f} lines/s"
    )
    print(f"peak traced memory of parse+compare: {peak_memory(lambda: analyse_text(cluster, data)):.0f} MiB")
    worst, p99 = asyncio.run(loop_lateness(lambda: analyse_text(cluster, data)))
    print(f"event loop lateness while it runs in a thread: max {worst:.1f} ms, p99 {p99:.1f} ms")
    print(f"process max RSS so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

    if os.geteuid() != 0:
        print("not root: skipping iptables-save / nft timings (they need a network namespace)")
        return
    restore = iptables_restore(services)
    for backend in ("legacy", "nft"):
        with namespace(f"lbd-bench-{os.getpid()}-{backend}") as prefix:
            run(prefix, [f"iptables-{backend}-restore", "--noflush"], kubelet_hint())
            loaded, _ = run(prefix, [f"iptables-{backend}-restore"], restore)  # replaces nat and filter only
            nat_time, nat = run(prefix, [f"iptables-{backend}-save", "-t", "nat"])
            filter_time, _ = run(prefix, [f"iptables-{backend}-save", "-t", "filter"])
            saved_lines = nat.count("\n")
            print(
                f"iptables-{backend}: restore {loaded:.2f} s; iptables-save -t nat {nat_time:.2f} s "
                f"({saved_lines / nat_time:,.0f} lines/s), -t filter {filter_time:.2f} s"
            )

            async def rounds(prefix: list[str] = prefix) -> list[tuple[float, float, Analysis]]:
                reader = DataplaneReader(Runner(prefix), mode="iptables")
                timings = []
                for _ in range(2):  # the first round also finds the backend; later ones read only it
                    started = time.perf_counter()
                    raw = await reader.read()
                    read = time.perf_counter() - started
                    result = await asyncio.to_thread(analyse_in_worker, raw, cluster, NODE)
                    timings.append((read, time.perf_counter() - started, result))
                return timings

            for label, (read, total, result) in zip(("first", "next"), asyncio.run(rounds()), strict=True):
                require_clean(result)
                print(
                    f"  lbdoctor {label} round: {total:.2f} s "
                    f"(iptables-save {read:.2f} s, parse+compare {total - read:.2f} s)"
                )

    nft_services = many(args.nft_services, args.endpoints)
    nft_cluster = snapshot(nft_services)
    with namespace(f"lbd-bench-{os.getpid()}-nftables") as prefix:
        loaded, _ = run(prefix, ["nft", "-f", "-"], nft_script(nft_services))
        listed, document = run(prefix, ["nft", "-j", "list", "table", "ip", "kube-proxy"])
    raw = RawRules(NFTABLES, nft={"IPv4": document.encode()})
    require_clean(analyse_in_worker(raw, nft_cluster, NODE))
    median, _ = timed(lambda: analyse_in_worker(raw, nft_cluster, NODE), args.repeat)
    memory = peak_memory(lambda: analyse_in_worker(raw, nft_cluster, NODE))
    print(
        f"nftables, {args.nft_services} Services x {args.endpoints}: nft -f {loaded:.2f} s; nft -j list table "
        f"{listed:.2f} s ({len(document) / 2**20:.1f} MiB JSON); parse+compare {median:.2f} s, peak {memory:.0f} MiB"
    )


if __name__ == "__main__":
    main()
