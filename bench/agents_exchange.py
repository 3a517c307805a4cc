"""What the cluster role's reads of its node agents cost: the compact exchange (``/api/v1/probes``, conditional
requests, gzip) against the full ``/api/v1/results`` read whole every 5 s, as before issue 12.

    python -m bench.agents_exchange                        # 1,000 nodes x 100 targets, 1 minute a phase
    python -m bench.agents_exchange --nodes 200 --seconds 30

A child process serves N node agents, each the real web app (``exporter.web.server.build_app``) on its own
loopback address (127.3.x.y, one port), each publishing a node of ``--targets`` load-balanced pods: targets and
results are what the real node checks make of bench/cluster.py's objects (every target healthy), and each
publication is replaced every second, as probes keep a node agent publishing. The cluster role's real
``ProbeFeed`` reads them every 5 s in this process. Phases, one after the other:

1. steady: nothing changes but the publications;
2. churn: ``--churn`` targets a second, across the cluster, change their predicted state (a pod restarting
   somewhere every 10 ms at the default of 100/s is a heavy rollout);
3. before: the full ``/api/v1/results`` of every agent, read whole every 5 s and parsed into rows and results
   (what the cluster role did, only with AWS configured; the agent sends it uncompressed).

Bytes are what came over the connections (status line, headers, the body as sent: gzipped when it was); CPU is
user + system of each process over the phase. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import aiohttp

from bench.cluster import NODE, objects
from bench.targets import cpu_seconds, machine_note, raised_fd_limit, rss_mib
from exporter.agents import Agent, PeerClient, ProbeFeed
from exporter.exchange import parse_legacy_document
from exporter.lb.targets import TargetStatus
from exporter.lb.thresholds import LbState, PredictedHealth
from exporter.model.probe import ProbeOutcome

INTERVAL = 5.0  # node_agent_interval_seconds's default, and the old AWS round's


def address(index: int) -> str:
    return f"127.3.{index // 250}.{index % 250 + 1}"


def node_publication(targets: int) -> tuple[Any, Any]:
    """One node's targets (all probed healthy) and the node checks' results, as a node agent publishes them."""
    from exporter.checks import NodeRounds
    from exporter.checks.context import NodeContext
    from exporter.kube import convert
    from exporter.lb.healthcheck import ControllerConfig
    from exporter.lb.plan import build_plan
    from exporter.lb.targets import node_targets
    from exporter.model.snapshot import ClusterSnapshot

    kinds = {"Pod": ("pods", convert.pod), "Service": ("services", convert.service),
             "EndpointSlice": ("endpoint_slices", convert.endpoint_slice), "Ingress": ("ingresses", convert.ingress),
             "IngressClass": ("ingress_classes", convert.ingress_class), "Node": ("nodes", convert.node)}  # fmt: skip
    found: dict[str, list[Any]] = {name: [] for name, _ in kinds.values()}
    for obj in objects(targets, 8080):
        if obj["kind"] in kinds:
            name, make = kinds[obj["kind"]]
            found[name].append(make(obj))
    snapshot = ClusterSnapshot.of(**found)
    plan = build_plan(snapshot, ControllerConfig())
    placed = node_targets(plan, snapshot, NODE)
    now = time.time()
    ok = ProbeOutcome(True, None, 0.0012, 200, (("connect", 0.0003),), "HTTP 200")
    statuses = tuple(
        TargetStatus(target, ok, now, PredictedHealth(LbState.HEALTHY, 3, 0, 0)) for target in placed.targets
    )

    class _Errors:
        def error(self, component: str, kind: str) -> None:
            raise RuntimeError(f"{component}/{kind}")

    results = NodeRounds(_Errors())(NodeContext(NODE, snapshot, plan, placed, statuses, now))
    return statuses, results


async def serve(nodes: int, targets: int, port: int) -> None:
    """The agents: N real web apps, each with its node's publication, republished every second."""
    from exporter.checks.health_probe import verdict
    from exporter.metrics.selfmetrics import SelfMetrics
    from exporter.model.results import ResultSet
    from exporter.state import Board, Published
    from exporter.web.server import build_app, start

    statuses, results = node_publication(targets)
    boards: list[Board] = []
    runners = []
    for index in range(nodes):
        node = f"ip-10-{index // 250}-{index % 250}-1.ec2.internal"
        mine = tuple(replace(s, target=replace(s.target, node=node)) for s in statuses)
        mine_results = tuple(replace(r, node=node) if r.node else r for r in results)
        board = Board("node")
        board.ready = True
        board.publish(Published(ResultSet(1, time.time(), mine_results), mine, node=node))
        boards.append(board)
        runner, port = await start(build_app(board, SelfMetrics("node")), [(address(index), port)])
        runners.append(runner)  # port 0: the first agent's ephemeral port, the same for the others (like pods)
    churn = 0.0
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def commands() -> None:
        nonlocal churn
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            words = line.decode().split()
            if words[:1] == ["churn"]:
                churn = float(words[1])

    commander = asyncio.ensure_future(commands())
    print(f"READY {port}", flush=True)
    rng = random.Random(7)
    flipped = {LbState.HEALTHY: LbState.UNHEALTHY, LbState.UNHEALTHY: LbState.HEALTHY}
    failed = ProbeOutcome(False, None, 2.0, None, (), "no complete answer within the health check timeout")
    while not stop.is_set():
        second = loop.time()
        changes = int(churn) + (1 if rng.random() < churn - int(churn) else 0)
        changed: dict[int, Published] = {}
        for _ in range(changes):
            index = rng.randrange(nodes)
            current = changed.get(index, boards[index].current)
            at = rng.randrange(len(current.probes))
            status = current.probes[at]
            state = flipped[status.health.state]
            health = PredictedHealth(state, 0, 0, status.health.transitions + 1)
            new = replace(status, health=health, outcome=status.outcome if state is LbState.HEALTHY else failed)
            probes = (*current.probes[:at], new, *current.probes[at + 1 :])
            # The agent's finding follows its target's state, as its health_probe check would have it.
            kept = tuple(
                r for r in current.results.results if r.target != new.target.ref or r.check.value != "health_probe"
            )
            findings = (*kept, verdict(new, time.time()))
            changed[index] = replace(current, probes=probes, results=replace(current.results, results=findings))
        now = time.time()
        for index, board in enumerate(boards):  # probes keep every agent publishing
            current = changed.get(index, board.current)
            board.publish(replace(current, results=replace(current.results, produced_at=now)))
        await asyncio.sleep(max(0.0, 1.0 - (loop.time() - second)))
    commander.cancel()
    for runner in runners:
        await runner.cleanup()


class _Count:
    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self.outcomes: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def agent_read(self, outcome: str, wire_bytes: int) -> None:
        self.requests += 1
        self.bytes += wire_bytes
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def error(self, component: str, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def phase_exchange(
    agents: list[Agent], seconds: float, child: int, feed: ProbeFeed, count: _Count
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    cpu = (cpu_seconds(os.getpid()), cpu_seconds(child))
    start_requests, start_bytes = count.requests, count.bytes
    start_outcomes = dict(count.outcomes)
    started = loop.time()
    cycles: list[float] = []
    while loop.time() - started < seconds:
        begun = loop.time()
        await feed.read(agents)
        cycles.append(loop.time() - begun)
        await asyncio.sleep(max(0.0, INTERVAL - (loop.time() - begun)))
    elapsed = loop.time() - started
    outcomes = {k: v - start_outcomes.get(k, 0) for k, v in count.outcomes.items()}
    return _figures(elapsed, count.requests - start_requests, count.bytes - start_bytes, cycles, cpu, child, outcomes)


async def phase_before(agents: list[Agent], seconds: float, child: int) -> dict[str, Any]:
    """The old way: every agent's /api/v1/results, whole, every 5 s (all at once, as ProbeFeed.fetch did)."""
    client = PeerClient(timeout=10, max_bytes=64 * 1024 * 1024)
    loop = asyncio.get_running_loop()
    cpu = (cpu_seconds(os.getpid()), cpu_seconds(child))
    requests = wire = failed = 0
    cycles: list[float] = []
    async with aiohttp.ClientSession() as session:
        started = loop.time()
        while loop.time() - started < seconds:
            begun = loop.time()

            async def one(agent: Agent) -> int:
                answer = await client.get(session, f"{agent.base}/api/v1/results")
                parse_legacy_document(answer.document, None)  # what the old reader made of it: rows and results
                return answer.wire_bytes

            sizes = await asyncio.gather(*(one(agent) for agent in agents), return_exceptions=True)
            requests += len(sizes)
            wire += sum(size for size in sizes if isinstance(size, int))
            failed += sum(1 for size in sizes if not isinstance(size, int))
            cycles.append(loop.time() - begun)
            await asyncio.sleep(max(0.0, INTERVAL - (loop.time() - begun)))
        elapsed = loop.time() - started
    return _figures(elapsed, requests - failed, wire, cycles, cpu, child, {"200 (whole)": requests - failed, "failed": failed})


def _figures(
    elapsed: float, requests: int, wire: int, cycles: list[float], cpu: tuple[float, float], child: int,
    outcomes: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    per_minute = 60.0 / elapsed
    return {
        "requests_per_minute": requests * per_minute,
        "mib_per_minute": wire * per_minute / 1024 / 1024,
        "bytes_per_request": wire / requests if requests else 0.0,
        "cycle_median_s": sorted(cycles)[len(cycles) // 2] if cycles else 0.0,
        "reader_cpu_per_minute": (cpu_seconds(os.getpid()) - cpu[0]) * per_minute,
        "agents_cpu_per_minute": (cpu_seconds(child) - cpu[1]) * per_minute,
        "outcomes": outcomes,
    }


async def main_async(args: argparse.Namespace) -> None:
    command = [sys.executable, "-m", "bench.agents_exchange", "--serve", "--nodes", str(args.nodes),
               "--targets", str(args.targets), "--port", str(args.port)]  # fmt: skip
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    assert child.stdout is not None
    assert child.stdin is not None
    try:
        line = await asyncio.to_thread(child.stdout.readline)
        if not line.startswith("READY"):
            raise SystemExit(f"the agents did not start: {line!r}")
        port = int(line.split()[1])
        agents = [Agent(f"http://{address(index)}:{port}") for index in range(args.nodes)]
        count = _Count()
        feed = ProbeFeed(count, PeerClient(timeout=10, max_bytes=64 * 1024 * 1024), concurrency=64, telemetry=count)
        await feed.read(agents)  # the first, whole read of every agent
        first_bytes = count.bytes
        rows: dict[str, dict[str, Any]] = {}
        rows["steady"] = await phase_exchange(agents, args.seconds, child.pid, feed, count)
        child.stdin.write(f"churn {args.churn}\n")
        child.stdin.flush()
        rows["churn"] = await phase_exchange(agents, args.seconds, child.pid, feed, count)
        child.stdin.write("churn 0\n")
        child.stdin.flush()
        rows["before"] = await phase_before(agents, args.seconds, child.pid)
        fds = len(os.listdir("/proc/self/fd"))
        await feed.close()
        reader_rss = rss_mib(os.getpid())
        agents_rss = rss_mib(child.pid)
    finally:
        child.terminate()
        child.wait(30)
    views = feed.views()
    print(f"\n{machine_note()}")
    print(f"{args.nodes} node agents x {args.targets} targets, read every {INTERVAL:g} s, {args.seconds:g} s a phase; "
          f"churn {args.churn:g} target changes a second")  # fmt: skip
    print(f"first read of every agent (whole, gzipped): {first_bytes / 1024 / 1024:.2f} MiB; agents ok: "
          f"{sum(1 for v in views if v.state.value == 'ok')} of {len(views)}; errors: {count.errors or 'none'}")  # fmt: skip
    before = rows["before"]
    print(
        "\n| phase | requests/min | MiB/min | bytes/request | read cycle (median) | reader CPU s/min | agents' CPU s/min (all) | answers |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        answers = ", ".join(f"{k} {v}" for k, v in sorted(row["outcomes"].items()))
        ratio = f" ({row['mib_per_minute'] / before['mib_per_minute']:.3f}x)" if name != "before" else ""
        per = f" ({row['bytes_per_request'] / before['bytes_per_request']:.4f}x)" if name != "before" else ""
        print(f"| {name} | {row['requests_per_minute']:,.0f} | {row['mib_per_minute']:,.2f}{ratio} | "
              f"{row['bytes_per_request']:,.0f}{per} | {row['cycle_median_s']:.2f} s | {row['reader_cpu_per_minute']:.1f} | "
              f"{row['agents_cpu_per_minute']:.1f} | {answers} |")  # fmt: skip
    print(f"\nreader: peak RSS {reader_rss[1]:.0f} MiB, {fds} descriptors open after the reads (keep-alive); "
          f"agents' process: peak RSS {agents_rss[1]:.0f} MiB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--churn", type=float, default=100.0, help="target state changes a second, cluster-wide")
    parser.add_argument("--port", type=int, default=0, help="the agents' port (0: an ephemeral one)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    with raised_fd_limit():
        if args.serve:
            asyncio.run(serve(args.nodes, args.targets, args.port))
        else:
            asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
