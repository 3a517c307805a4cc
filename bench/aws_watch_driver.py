"""One lbdoctor AWS collector watching moto the way the cluster role does, for ``bench.aws_refresh``.

Run by path with ``PYTHONPATH`` set to the checkout to measure (this branch, or a git worktree of the
reference), so the same driver measures both: it uses only what both have (``AwsDoctor``, its
``collector.collect(cluster, now, hot_targets=…)``, ``api.counts()``), at their default settings.

It collects, then pauses ``--interval`` seconds (as the cluster role's ``aws`` task does with
``aws_refresh_interval_seconds``), and prints one JSON line with the targets whose state changed since
its previous round and when the round ended (when the metric would show it). IPs in ``--probe-file``
(re-read every round) are passed as failing probes, as the node agents would report them. Prints
``{"warm": …}`` once every target group was read, and its call counts then and when stopped (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any


def emit(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--probe-file", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()

    import exporter
    from exporter.aws.config import AwsSettings
    from exporter.aws.doctor import AwsDoctor
    from exporter.model.snapshot import ClusterSnapshot

    settings = AwsSettings(cluster_name=args.cluster, region=args.region)
    doctor = AwsDoctor(settings)
    emit({"exporter": str(Path(exporter.__file__).parent), "elbv2_rate": settings.elbv2_rate})
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    snapshot = ClusterSnapshot()
    states: dict[tuple[str, str], str] = {}
    seen: dict[str, float] = {}
    warm = False
    while not stop.is_set():
        started = time.time()
        try:
            hot = set(json.loads(args.probe_file.read_text() or "[]"))
        except (OSError, ValueError):
            hot = set()
        aws = await doctor.collector.collect(snapshot, started, hot_targets=hot)
        ended = time.time()
        changed = []
        for arn, health in aws.health.items():
            if seen.get(arn) == health.fetched_at:
                continue
            seen[arn] = health.fetched_at
            for target in health.targets:
                key = (arn, target.id)
                if states.get(key) != target.state:
                    states[key] = target.state
                    changed.append([arn, target.id, target.state])
        emit({"t": ended, "started": started, "changed": changed if warm else len(changed)})
        if not warm and aws.target_groups and all(arn in seen for arn in aws.target_groups):
            warm = True
            emit({"warm": ended, "counts": [[*key, n] for key, n in doctor.api.counts().items()]})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.interval)  # as the cluster role: a pause after each round
    emit({"stopped": time.time(), "counts": [[*key, n] for key, n in doctor.api.counts().items()]})
    doctor.close()


if __name__ == "__main__":
    asyncio.run(main())
