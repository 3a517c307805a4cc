"""Footprint: resident memory of the real node agent probing N load-balanced pods (goal: 500 pods, <= 100 MiB).

The daemon, ``lbdoctor run --role node``, runs as a child process against a fake API server in this
process holding N pods on its node (Services of 10 pods, ALB and NLB alternating, HTTP checks every
5 s); the pods' apps are a target fleet in a third process. Once the agent probes every target, its
RSS is sampled each second for the window, with a /metrics scrape and a status-page request every
few seconds so rendering is included. Reported: RSS at the end, the highest sample, and the
kernel's peak (VmHWM, which includes start-up). A second table attributes the memory: what a bare
interpreter costs and what each group of imports adds.

    .venv/bin/python -m bench.footprint                  # 500 targets, 30 s window
    .venv/bin/python -m bench.footprint --targets 1000
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

from bench.cluster import sample_sum, scrape_text, start_api, start_daemon, stop_process
from bench.probe_cost import free_port
from bench.targets import TargetFleet, machine_note, raised_fd_limit, rss_mib

# Import groups measured one after another in a fresh interpreter: what each adds to RSS.
IMPORT_STEPS: tuple[tuple[str, str], ...] = (
    ("Python interpreter", "pass"),
    ("+ asyncio, ssl, json", "import asyncio, ssl, json"),
    ("+ aiohttp", "import aiohttp.web"),
    ("+ structlog, prometheus_client", "import structlog, prometheus_client"),
    ("+ pydantic, yaml (settings)", "import exporter.settings"),
    ("+ kubernetes (client)", "import exporter.kube.client"),
    ("+ the rest of lbdoctor (daemon)", "import exporter.daemon, exporter.cli"),
)


def import_costs() -> list[tuple[str, float]]:
    script = "\n".join(
        [
            "import sys",
            "def rss():",
            "    for line in open('/proc/self/status'):",
            "        if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024",
            *(f"{code}\nprint({label!r}, rss(), flush=True, sep='\\t')" for label, code in IMPORT_STEPS),
        ]
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return [(line.split("\t")[0], float(line.split("\t")[1])) for line in output.splitlines()]


async def measure(targets: int, seconds: float) -> dict[str, float]:
    with TargetFleet(targets) as fleet:
        api, kubeconfig = await start_api(targets, fleet.port)
        port = free_port()
        process = start_daemon(kubeconfig, f"127.0.0.1:{port}")
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            probing = 0.0
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
                try:
                    text = await scrape_text(base + "/metrics")
                except OSError:
                    continue
                probing = sample_sum(text, "lbdoctor_probe_success")
                if sample_sum(text, "lbdoctor_probe_targets") >= targets and probing >= targets:
                    break
            else:
                raise RuntimeError(f"the agent probed only {probing:.0f} of {targets} targets in 90 s")
            samples = []
            started = time.monotonic()
            tick = 0
            while time.monotonic() - started < seconds:
                await asyncio.sleep(1)
                tick += 1
                if tick % 5 == 0:
                    await scrape_text(base + "/metrics")
                    await scrape_text(base + "/")
                samples.append(rss_mib(process.pid)[0])
            final, peak = rss_mib(process.pid)
            text = await scrape_text(base + "/metrics")
            return {
                "final": final,
                "max": max(samples),
                "hwm": peak,
                "targets": sample_sum(text, "lbdoctor_probe_targets"),
                "ok": sample_sum(text, "lbdoctor_probe_success"),
            }
        finally:
            stop_process(process)
            await api.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0, help="sampling window once every target is probed")
    parser.add_argument("--goal", type=float, default=100.0, help="MiB")
    args = parser.parse_args()
    note = machine_note()
    with raised_fd_limit():
        result = asyncio.run(measure(args.targets, args.seconds))
    steps = import_costs()
    print()
    print(f"Footprint: lbdoctor run --role node with {args.targets} load-balanced pods on its node")
    print(f"({note}; RSS varies a little between runs)")
    print()
    header = f"{'measure':<44} {'MiB':>8}"
    print(header)
    print("-" * len(header))
    print(f"{'targets probed (lbdoctor_probe_targets)':<44} {result['targets']:>8.0f}")
    print(f"{'targets answering (sum probe_success)':<44} {result['ok']:>8.0f}")
    print(f"{'RSS at the end of the window':<44} {result['final']:>8.1f}")
    print(f"{'highest RSS sample in the window':<44} {result['max']:>8.1f}")
    print(f"{'peak RSS since start (VmHWM)':<44} {result['hwm']:>8.1f}")
    worst = max(result["max"], result["hwm"])
    verdict = "met" if worst <= args.goal else "NOT met"
    print(f"{'goal':<44} {args.goal:>8.0f}  {verdict} ({worst / args.goal:.2f} of the goal)")
    print()
    print("Where the memory goes (RSS of a fresh interpreter after each import step):")
    print()
    header = f"{'step':<44} {'RSS MiB':>8} {'adds':>8}"
    print(header)
    print("-" * len(header))
    previous = 0.0
    for label, rss in steps:
        print(f"{label:<44} {rss:>8.1f} {rss - previous:>+8.1f}")
        previous = rss
    print(
        f"{'running with all targets (end of window)':<44} {result['final']:>8.1f} {result['final'] - previous:>+8.1f}"
    )


if __name__ == "__main__":
    main()
