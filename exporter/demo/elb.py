"""What moto cannot do for the demo and the benchmark: be the load balancer.

moto's ``FakeTargetGroup.health_for`` answers ``healthy`` for every registered target and has no API to
say otherwise, so ``MotoTargetHealth`` hooks it (moto in server mode runs in this process's threads) and
serves the verdicts its caller sets, over moto's real DescribeTargetHealth. ``UnhealthyCounts`` keeps
each target's verdicts over time and turns them into what the load balancers publish to CloudWatch: the
``UnHealthyHostCount`` of each target group and load balancer, one datapoint a minute (the most targets
unhealthy at any moment of that minute), which ``publish`` puts into moto's CloudWatch.

Used only with the ``demo`` extra (moto installed); nothing else of lbdoctor imports it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from exporter.aws.detect import METRIC, series_of

UNHEALTHY = ("unhealthy", "unhealthy.draining")
METRICS_PER_PUT = 20  # PutMetricData's long-standing limit (AWS raised it to 1,000; moto and older SDKs vary)


@dataclass(frozen=True)
class Verdict:
    state: str
    reason: str | None = None
    description: str | None = None


class MotoTargetHealth:
    """Set the load balancer's verdict of a target; moto serves it. ``install`` once, ``uninstall`` at the end."""

    def __init__(self) -> None:
        self.verdicts: dict[tuple[str, str], Verdict] = {}  # (target group ARN, target id) -> verdict
        self._original: Any = None

    def install(self) -> None:
        from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup

        original = FakeTargetGroup.health_for
        verdicts = self.verdicts

        def health_for(group: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
            status = original(group, target, ec2_backend)
            verdict = verdicts.get((group.arn, target["Id"]))
            if verdict is None or status.status != "healthy":
                return status  # not registered (or stopped) stays what moto says
            return FakeHealthStatus(
                status.instance_id,
                status.port,
                status.health_check_port,
                verdict.state,
                verdict.reason,
                verdict.description,
            )

        self._original = original
        setattr(FakeTargetGroup, "health_for", health_for)  # noqa: B010 (a method of a library class)

    def uninstall(self) -> None:
        if self._original is not None:
            from moto.elbv2.models import FakeTargetGroup

            setattr(FakeTargetGroup, "health_for", self._original)  # noqa: B010
            self._original = None

    def set(self, arn: str, target: str, verdict: Verdict) -> None:
        self.verdicts[(arn, target)] = verdict


@dataclass
class _Timeline:
    unhealthy: bool = False
    changes: list[tuple[float, bool]] = field(default_factory=list)  # (time, unhealthy after it)


class UnhealthyCounts:
    """Each target's unhealthy/not-unhealthy history, as the load balancer's per-minute metric sees it."""

    def __init__(self, keep_seconds: float = 900.0) -> None:
        self._targets: dict[tuple[str, str], _Timeline] = {}
        self._lock = threading.Lock()
        self._keep = keep_seconds

    def record(self, arn: str, target: str, state: str, at: float) -> None:
        unhealthy = state in UNHEALTHY
        with self._lock:
            timeline = self._targets.setdefault((arn, target), _Timeline())
            if timeline.unhealthy != unhealthy or not timeline.changes:
                timeline.changes.append((at, unhealthy))
                timeline.unhealthy = unhealthy
                while len(timeline.changes) > 1 and timeline.changes[1][0] < at - self._keep:
                    timeline.changes.pop(0)

    def minute(self, start: float, arns: Iterable[str] | None = None) -> dict[str, int]:
        """Per target group: targets unhealthy at any moment of [start, start + 60)."""
        wanted = None if arns is None else set(arns)
        counts: dict[str, int] = {}
        with self._lock:
            for (arn, _), timeline in self._targets.items():
                if wanted is not None and arn not in wanted:
                    continue
                counts.setdefault(arn, 0)
                state = False
                hit = False
                for moment, unhealthy in timeline.changes:
                    if moment >= start + 60:
                        break
                    if moment >= start and unhealthy:
                        hit = True
                    state = unhealthy
                if hit or state:
                    counts[arn] += 1
        return counts


def publish(cloudwatch: Any, start: float, counts: Mapping[str, int], lbs: Mapping[str, Iterable[str]]) -> int:
    """Put one minute's UnHealthyHostCount of each target group (for each of its load balancers) into
    CloudWatch, timestamped at the minute's start as ELB does. Returns the datapoints put."""
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    stamp = datetime.fromtimestamp(start, UTC)
    for arn, count in counts.items():
        for lb_arn in lbs.get(arn, ()):
            series = series_of(arn, lb_arn)
            if series is not None:
                dims = [
                    {"Name": "TargetGroup", "Value": series.target_group},
                    {"Name": "LoadBalancer", "Value": series.load_balancer},
                ]
                by_namespace.setdefault(series.namespace, []).append(
                    {"MetricName": METRIC, "Dimensions": dims, "Value": count, "Timestamp": stamp}
                )
    put = 0
    for namespace, data in by_namespace.items():
        for first in range(0, len(data), METRICS_PER_PUT):
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[first : first + METRICS_PER_PUT])
            put += len(data[first : first + METRICS_PER_PUT])
    return put
