"""Benchmark: the cluster role and ``diagnose -A`` on a synthetic cluster of 10,000 Services,
100,000 pods and 2,000 Ingresses served by the fake API server (in its own process).

    .venv/bin/python -m bench.cluster_role [--services N --pods N --ingresses N]

Measures: time from start to the first published full evaluation (initial list included), the
duration of an incremental re-evaluation after one pod changes, the cluster role's peak RSS, and the
wall time of ``lbdoctor diagnose -A --output json``. Prints a table and writes bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Any


def _events(stream: IO[str], wanted: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            raise RuntimeError("the cluster role exited")
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == wanted:
                return dict(event)
    raise TimeoutError(wanted)


def _rss_mib(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _patch_pod(api: str, namespace: str, name: str, ready: bool) -> None:
    body = json.dumps(
        {"status": {"containerStatuses": [{"name": "app", "ready": ready, "state": {"running": {}}}]}}
    ).encode()
    request = urllib.request.Request(
        f"{api}/api/v1/namespaces/{namespace}/pods/{name}",
        data=body,
        method="PATCH",
        headers={"Content-Type": "application/merge-patch+json"},
    )
    urllib.request.urlopen(request, timeout=30).read()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--ingresses", type=int, default=2_000)
    parser.add_argument("--changes", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lbdoctor-bench-"))
    kubeconfig = workdir / "kubeconfig"
    fake = subprocess.Popen(
        [sys.executable, "-m", "bench.synthetic", "--services", str(args.services), "--pods", str(args.pods),
         "--ingresses", str(args.ingresses), "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdout is not None
    ready = fake.stdout.readline().strip()
    api = ready.split()[1]
    print(f"fake API server with the synthetic cluster ready at {api}", flush=True)
    environment = {**os.environ, "LBDOCTOR_LEADER_ELECTION": "false"}
    started = time.monotonic()
    role = subprocess.Popen(
        [sys.executable, "-m", "exporter", "run", "--role", "cluster", "--kubeconfig", str(kubeconfig),
         "--listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug"],
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    assert role.stderr is not None
    try:
        synced = _events(role.stderr, "all caches synced", 300)
        synced_after = time.monotonic() - started
        first = _events(role.stderr, "evaluated", 300)
        first_after = time.monotonic() - started
        incremental = []
        for index in range(args.changes):
            namespace = f"team-{index % 100:03d}"
            service = index * 100 + index % 100
            _patch_pod(api, namespace, f"svc-{service:05d}-00", ready=index % 2 == 1)
            event = _events(role.stderr, "evaluated", 60)
            incremental.append(float(event["seconds"]))
        rss, peak = _rss_mib(role.pid)
    finally:
        role.terminate()
        role.wait(10)
    diagnose_started = time.monotonic()
    diagnosis = subprocess.run(
        [sys.executable, "-m", "exporter", "diagnose", "--kubeconfig", str(kubeconfig), "-A", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    diagnose_wall = time.monotonic() - diagnose_started
    fake.terminate()
    report = json.loads(diagnosis.stdout)
    rows = {
        "objects": f"{args.services:,} Services, {args.pods:,} pods, {args.ingresses:,} Ingresses",
        "caches synced after (s)": round(synced_after, 2),
        "first full evaluation published after start (s)": round(first_after, 2),
        "first full evaluation itself (s)": round(float(first["seconds"]), 2),
        "results in the first round": first["results"],
        "incremental re-evaluation after one pod change, median (ms)": round(statistics.median(incremental) * 1000, 1),
        "incremental re-evaluation, max (ms)": round(max(incremental) * 1000, 1),
        "cluster role RSS now / peak (MiB)": f"{rss:.0f} / {peak:.0f}",
        "diagnose -A --output json wall (s)": round(diagnose_wall, 2),
        "diagnose exit code / results": f"{diagnosis.returncode} / {len(report['results']):,}",
    }
    _ = synced
    width = max(len(key) for key in rows)
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "cluster_role.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
