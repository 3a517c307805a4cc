"""Benchmark: one node agent and the cluster role on a 10,000-Service / 100,000-pod / 1,000-node cluster,
this tree against a reference tree (main at the commit this branch started from), in the same run.

    .venv/bin/python -m bench.scale                        # reference: git archive of REFERENCE_COMMIT
    .venv/bin/python -m bench.scale --reference-commit main --window 60
    .venv/bin/python -m bench.scale --services 1000 --pods 10000 --ingresses 200 --nodes 100   # a quick look

The cluster (``bench/synthetic.py``) is served by the fake API server in a process of its own, from
already-serialized lists as kube-apiserver's watch cache answers them. The pods of one node
(``ip-10-0-0-0``, 100 of them at the default size) have loopback addresses served by a target fleet
(``bench/targets.py``, another process), so that node's agent probes real servers; no other address is
ever probed (the node agent probes only its own node's pods; the cluster role probes nothing).

Each role runs four times, alternating this tree and the reference (this, reference, this, reference):
each a fresh process, started, measured and stopped before the next starts, so they never compete for
the CPU; the numbers of a side are the median of its two runs. Per run:

- time from process start to "all caches synced" (the role's own log line), and from then to the first
  results: the cluster role's first "evaluated" log line; the node agent's first /metrics with every
  target probed;
- idle CPU: after a settling pause, user + system CPU of the process over ``--window`` seconds with no
  change in the cluster, scraped every 15 s as Prometheus would; as a percentage of one core;
- peak RSS (VmHWM: the kernel's high-water mark since start, lists and first evaluation included);
- one /metrics scrape at the end: series (sample lines) and bytes (uncompressed, as the text format).

The reference runs with the same interpreter and site-packages, its own ``exporter`` package first on
``PYTHONPATH`` (an editable install of this tree is taken out of the import system for it). Settings are
the defaults except: leader election off (one cluster-role replica), and ``kube_proxy_mode: off`` on the
node agent, as the machine has no kube-proxy to compare with (``--kube-proxy`` keeps the default, which
as root reads this machine's own, empty, rules every 30 s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.probe_cost import free_port
from bench.synthetic import node_name, objects
from bench.targets import TargetFleet, cpu_seconds, machine_note, raised_fd_limit, rss_mib

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_COMMIT = "dd7163b"  # main when issue 12 (part B) started
NODE = node_name(0)
SCRAPE_EVERY = 15.0

# Run the reference's ``exporter`` from PYTHONPATH: an editable install of this tree registers a finder
# that would otherwise win over PYTHONPATH.
_LAUNCH = (
    "import runpy, sys\n"
    "sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, '__module__', type(f).__module__)"
    ".startswith('__editable__')]\n"
    "runpy.run_module('exporter', run_name='__main__', alter_sys=True)\n"
)


@dataclass
class Tree:
    name: str
    path: Path

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-c", _LAUNCH, *args]

    def check(self) -> None:
        """The tree's exporter is the one its processes import."""
        found = subprocess.run(
            [sys.executable, "-c", _LAUNCH.replace("runpy.run_module", "print(__import__('exporter').__file__) #")],
            capture_output=True, text=True, env=self.environment(), cwd=self.path, check=True,
        ).stdout.strip()  # fmt: skip
        if not found.startswith(str(self.path)):
            raise RuntimeError(f"{self.name} would import {found}, not its own exporter")

    def environment(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.path), **extra}


@dataclass
class Run:
    tree: str
    role: str
    synced: float = 0.0  # seconds from start
    first: float = 0.0  # seconds from caches synced to first results
    probed: float = 0.0  # node agent: seconds from caches synced to every target probed
    cpu_percent: float = 0.0
    peak_mib: float = 0.0
    series: int = 0
    bytes: int = 0
    notes: list[str] = field(default_factory=list)


def reference_tree(commit: str, workdir: Path) -> Path:
    """``git archive COMMIT exporter`` unpacked into workdir/reference."""
    target = workdir / "reference"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "exporter"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def count_on_node(services: int, pods: int, ingresses: int, nodes: int) -> int:
    return sum(
        1
        for obj in objects(services, pods, ingresses, 100, nodes)
        if obj["kind"] == "Pod" and obj["spec"]["nodeName"] == NODE
    )


class Lines:
    """Reads a process's stderr in a thread; ``wait_for(event)`` returns the time the JSON log line came."""

    def __init__(self, stream: IO[str]) -> None:
        self._events: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Condition()
        self._closed = False
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    with self._lock:
                        self._events.append((time.monotonic(), event))
                        self._lock.notify_all()
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def wait_for(self, wanted: str, timeout: float, after: float = 0.0) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for moment, event in self._events:
                    if moment >= after and event.get("event") == wanted:
                        return moment, event
                if self._closed:
                    raise RuntimeError(f"the process exited before {wanted!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(wanted)
                self._lock.wait(left)


def get(url: str, timeout: float = 120.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def series_of(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def sample_sum(body: bytes, name: bytes) -> float:
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (b" ", b"{"):
            total += float(line.rsplit(b" ", 1)[1])
    return total


def sample_count(body: bytes, name: bytes) -> int:
    return sum(
        1 for line in body.splitlines() if line.startswith(name) and line[len(name) : len(name) + 1] in (b" ", b"{")
    )


@contextlib.contextmanager
def started(tree: Tree, command: list[str], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    # In the tree's own folder: ``python -c`` puts the working directory first on sys.path.
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tree.path
    )
    assert process.stderr is not None
    try:
        yield process, Lines(process.stderr)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def idle(process: subprocess.Popen[str], base: str, window: float) -> float:
    """CPU over ``window`` seconds as a percentage of one core, scraped every 15 s."""
    before, clock = cpu_seconds(process.pid), time.monotonic()
    end = clock + window
    while (now := time.monotonic()) < end:
        get(base + "/metrics")
        time.sleep(min(SCRAPE_EVERY, max(0.0, end - time.monotonic())))
        _ = now
    return 100.0 * (cpu_seconds(process.pid) - before) / (time.monotonic() - clock)


def run_node(tree: Tree, kubeconfig: Path, args: argparse.Namespace) -> Run:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = tree.command(
        "run", "--role", "node", "--node-name", NODE, "--kubeconfig", str(kubeconfig), "--listen",
        f"127.0.0.1:{port}", "--log-format", "json", "--log-level", "info",
    )  # fmt: skip
    extra = {} if args.kube_proxy else {"LBDOCTOR_KUBE_PROXY_MODE": "off"}
    result = Run(tree.name, "node")
    start = time.monotonic()
    with started(tree, command, tree.environment(**extra)) as (process, lines):
        synced, _ = lines.wait_for("all caches synced; results are live", 600)
        result.synced = synced - start
        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(OSError):
                body = get(base + "/metrics", 30)
                planned = sample_sum(body, b"lbdoctor_probe_targets")
                if planned and not result.first:
                    result.first = time.monotonic() - synced
                if planned and sample_count(body, b"lbdoctor_probe_success") >= planned:
                    result.probed = time.monotonic() - synced
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("the node agent did not probe every target")
            time.sleep(0.2)
        time.sleep(args.settle)
        result.cpu_percent = idle(process, base, args.window)
        body = get(base + "/metrics")
        result.series, result.bytes = series_of(body), len(body)
        result.peak_mib = rss_mib(process.pid)[1]
        ok = sample_sum(body, b"lbdoctor_probe_success")
        result.notes.append(f"{sample_count(body, b'lbdoctor_probe_success')} targets, {ok:.0f} passing")
    return result


def run_cluster(tree: Tree, kubeconfig: Path, args: argparse.Namespace) -> Run:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = tree.command(
        "run", "--role", "cluster", "--kubeconfig", str(kubeconfig), "--listen", f"127.0.0.1:{port}",
        "--log-format", "json", "--log-level", "debug",
    )  # fmt: skip
    result = Run(tree.name, "cluster")
    start = time.monotonic()
    with started(tree, command, tree.environment(LBDOCTOR_LEADER_ELECTION="false")) as (process, lines):
        synced, _ = lines.wait_for("all caches synced", 600)
        result.synced = synced - start
        first, event = lines.wait_for("evaluated", 600, after=synced)
        result.first = first - synced
        result.notes.append(f"{event.get('results')} results in the first round")
        time.sleep(args.settle)
        result.cpu_percent = idle(process, base, args.window)
        body = get(base + "/metrics", 300)
        result.series, result.bytes = series_of(body), len(body)
        result.peak_mib = rss_mib(process.pid)[1]
    return result


def median_run(runs: list[Run]) -> Run:
    merged = Run(runs[0].tree, runs[0].role)
    for name in ("synced", "first", "probed", "cpu_percent", "peak_mib"):
        setattr(merged, name, statistics.median(getattr(run, name) for run in runs))
    merged.series = runs[-1].series
    merged.bytes = runs[-1].bytes
    merged.notes = runs[-1].notes
    return merged


def table(role: str, mine: Run, reference: Run, goals: dict[str, str]) -> list[str]:
    rows = [
        ("caches synced after start (s)", f"{mine.synced:.1f}", f"{reference.synced:.1f}", ""),
        (
            "first results after caches synced (s)",
            f"{mine.first:.1f}",
            f"{reference.first:.1f}",
            goals.get("first", ""),
        ),
        *(
            [("every target probed, after caches synced (s)", f"{mine.probed:.1f}", f"{reference.probed:.1f}", "")]
            if role == "node agent"
            else []
        ),
        ("peak RSS (MiB)", f"{mine.peak_mib:.0f}", f"{reference.peak_mib:.0f}", goals.get("rss", "")),
        ("idle CPU (% of one core)", f"{mine.cpu_percent:.2f}", f"{reference.cpu_percent:.2f}", goals.get("cpu", "")),
        ("series per scrape", f"{mine.series:,}", f"{reference.series:,}", goals.get("series", "")),
        ("bytes per scrape", f"{mine.bytes:,}", f"{reference.bytes:,}", goals.get("bytes", "")),
    ]
    ratios = [
        mine.synced / reference.synced if reference.synced else 0,
        mine.first / reference.first if reference.first else 0,
        *([mine.probed / reference.probed if reference.probed else 0] if role == "node agent" else []),
        mine.peak_mib / reference.peak_mib if reference.peak_mib else 0,
        mine.cpu_percent / reference.cpu_percent if reference.cpu_percent else 0,
        mine.series / reference.series if reference.series else 0,
        mine.bytes / reference.bytes if reference.bytes else 0,
    ]
    out = [
        f"### {role}",
        "",
        "| measure | this tree | reference | ratio | goal |",
        "|---|---:|---:|---:|---:|",
    ]
    out += [f"| {a} | {b} | {c} | {r:.2f} | {g} |" for (a, b, c, g), r in zip(rows, ratios, strict=True)]
    out += ["", f"this tree: {'; '.join(mine.notes)}; reference: {'; '.join(reference.notes)}", ""]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--ingresses", type=int, default=2_000)
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--reference-commit", default=REFERENCE_COMMIT)
    parser.add_argument("--reference", type=Path, help="a tree holding the reference's exporter/ (else git archive)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of idle CPU measured per run")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after the first results before it")
    parser.add_argument("--runs", type=int, default=2, help="runs per role and tree, alternating")
    parser.add_argument("--roles", default="node,cluster")
    parser.add_argument("--kube-proxy", action="store_true", help="leave kube_proxy_mode at its default")
    args = parser.parse_args()
    note = machine_note()
    workdir = Path(tempfile.mkdtemp(prefix="lbdoctor-scale-"))
    this = workdir / "this"
    shutil.copytree(ROOT / "exporter", this / "exporter", ignore=shutil.ignore_patterns("__pycache__"))
    trees = [
        Tree("this tree", this),  # a copy: editing the tree while the benchmark runs changes nothing
        Tree("reference", args.reference or reference_tree(args.reference_commit, workdir)),
    ]
    for tree in trees:
        tree.check()
    targets = count_on_node(args.services, args.pods, args.ingresses, args.nodes)
    kubeconfig = workdir / "kubeconfig"
    results: dict[tuple[str, str], list[Run]] = {}
    with raised_fd_limit(), TargetFleet(targets) as fleet:
        fake = subprocess.Popen(
            [sys.executable, "-m", "bench.synthetic", "--services", str(args.services), "--pods", str(args.pods),
             "--ingresses", str(args.ingresses), "--nodes", str(args.nodes), "--kubeconfig", str(kubeconfig),
             "--loopback-node", NODE, "--target-port", str(fleet.port)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        try:
            assert fake.stdout is not None
            print(f"fake API server: {fake.stdout.readline().strip()}; {targets} pods on {NODE}", flush=True)
            for role in args.roles.split(","):
                for index in range(args.runs * 2):
                    tree = trees[index % 2]
                    run = run_node(tree, kubeconfig, args) if role == "node" else run_cluster(tree, kubeconfig, args)
                    print(json.dumps(run.__dict__), flush=True)
                    results.setdefault((role, tree.name), []).append(run)
        finally:
            fake.terminate()
            fake.wait(30)
    print()
    print(f"{args.services:,} Services, {args.pods:,} pods, {args.ingresses:,} Ingresses, {args.nodes:,} nodes; {note}")
    print(f"reference: {args.reference or args.reference_commit}; median of {args.runs} runs each")
    print()
    goals = {
        "node": {"rss": "≤ 100", "cpu": "≤ 1"},
        "cluster": {"rss": "≤ 400", "first": "≤ 10", "series": "≤ 100,000", "bytes": "≤ 10,000,000"},
    }
    lines: list[str] = []
    for role in args.roles.split(","):
        mine = median_run(results[(role, "this tree")])
        reference = median_run(results[(role, "reference")])
        lines += table("node agent" if role == "node" else "cluster role", mine, reference, goals[role])
    print("\n".join(lines))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "scale.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
