"""Faults: the attacks of issue 10 against the real node agent, and what each costs it.

Runs every scenario of ``tests/faults/scenarios.py`` (the fault suite's own, so the figures and the
tests measure the same thing): the daemon as a child process (``python -m exporter run --role node``)
against the fake API server in this process, its "pods" real servers on loopback addresses here.
Prints each scenario's figures (CPU seconds and share of one core, peak RSS, the longest gap between
two probes of another tenant's healthy target, /metrics size, descriptors, log bytes) as JSON lines,
then the table rows docs/reliability.md quotes.

    .venv/bin/python -m bench.faults                    # every scenario, ~3 min
    .venv/bin/python -m bench.faults hanging_pod        # one of them

Run the same attacks against another checkout's daemon (the code before a fix, say) with
``FAULTS_DAEMON_ROOT=/path/to/that/checkout``: the daemon is started from that tree's ``exporter``
(``git worktree add`` or ``git archive`` of the older commit). The fault suite takes it too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.faults import scenarios
from tests.faults.harness import raised_descriptor_limit

SCENARIOS = {
    "interim_flood": scenarios.interim_flood,
    "hanging_pod": scenarios.hanging_pod,
    "idle_connections": scenarios.idle_connections,
    "huge_annotation": scenarios.huge_annotation,
    "kubelet_port": scenarios.kubelet_port,
    "banner_and_held": scenarios.banner_and_held,
}


async def run(names: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="lbdoctor-faults-") as folder, raised_descriptor_limit():
        for name in names:
            started = time.monotonic()
            figures = await SCENARIOS[name](Path(folder) / name)
            figures["scenario_seconds"] = round(time.monotonic() - started, 1)
            found[name] = figures
            print(json.dumps({"scenario": name, **figures}, default=str), flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], default=[])
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"# {os.cpu_count()} CPUs, load average {load:.2f} at start, Python {sys.version.split()[0]}", flush=True)
    asyncio.run(run(args.scenarios or list(SCENARIOS)))


if __name__ == "__main__":
    main()
