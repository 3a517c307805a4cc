"""CloudWatch as a change detector for target health: one GetMetricData call watches 500 target groups.

DescribeTargetHealth takes one target group a call, so reading 500 of them every minute needs more than
8 calls a second, four times lbdoctor's share of the account's ELBv2 bucket. But the load balancers
publish ``UnHealthyHostCount`` per target group and load balancer every minute, and GetMetricData returns
500 of those series in one call, from CloudWatch's own quota. lbdoctor compares each target group's
latest count with the count of unhealthy targets it holds from its last DescribeTargetHealth; where they
differ, and its read is older than CloudWatch's datapoint, that target group is read again at once.

Only target groups whose targets are all healthy are watched (the others are read at the hot interval
anyway), and only while the budget cannot read every one within the interval (``cloudwatch: auto``).

Pure helpers (``watches``, ``queries``, ``readings``, ``disagreements``); ``CloudWatchDetector`` asks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exporter.aws.model import TargetGroup, TargetGroupHealth

METRIC = "UnHealthyHostCount"
PERIOD = 60  # ELB metrics have one datapoint a minute
LOOKBACK = 5 * PERIOD  # how far back to look for the latest datapoint (CloudWatch publishes them late)
QUERIES_PER_CALL = 500  # GetMetricData's limit
# Polls are aligned to CloudWatch's minutes, this long after one ends: a minute's datapoint cannot
# exist before it ends, so a poll just after the boundary sees it soonest (CloudWatch may add its own delay).
ALIGN = 10.0
UNHEALTHY_STATES = ("unhealthy", "unhealthy.draining")

# The load balancer's type, from its ARN (loadbalancer/app|net|gwy/name/id), picks the namespace.
NAMESPACES = {"app": "AWS/ApplicationELB", "net": "AWS/NetworkELB", "gwy": "AWS/GatewayELB"}


@dataclass(frozen=True, slots=True)
class Watch:
    """One series to read: a target group's UnHealthyHostCount as one load balancer counts it."""

    arn: str
    namespace: str
    target_group: str  # the TargetGroup dimension: targetgroup/<name>/<id>
    load_balancer: str  # the LoadBalancer dimension: app/<name>/<id>


def _resource(arn: str, kind: str) -> str | None:
    """The resource part of an ELBv2 ARN after ``kind/`` (``targetgroup/name/id`` → ``name/id``)."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or not parts[5].startswith(kind + "/"):
        return None
    return parts[5].removeprefix(kind + "/") or None


def series_of(arn: str, lb_arn: str) -> Watch | None:
    """The CloudWatch series of a target group behind one load balancer (None: not an ELBv2 pair)."""
    target_group = _resource(arn, "targetgroup")
    load_balancer = _resource(lb_arn, "loadbalancer")  # app/name/id, net/name/id, gwy/name/id
    namespace = NAMESPACES.get(load_balancer.split("/", 1)[0]) if load_balancer else None
    if target_group is None or load_balancer is None or namespace is None:
        return None
    return Watch(arn, namespace, f"targetgroup/{target_group}", load_balancer)


def watches(groups: Mapping[str, TargetGroup]) -> list[Watch]:
    found = []
    for arn, group in sorted(groups.items()):
        for lb_arn in group.load_balancer_arns:
            watch = series_of(arn, lb_arn)
            if watch is not None:
                found.append(watch)
    return found


def queries(chunk: Sequence[Watch]) -> list[dict[str, Any]]:
    """GetMetricData queries, ``q<i>`` for the i-th watch (Ids must start with a lower-case letter)."""
    return [
        {
            "Id": f"q{index}",
            "MetricStat": {
                "Metric": {
                    "Namespace": watch.namespace,
                    "MetricName": METRIC,
                    "Dimensions": [
                        {"Name": "TargetGroup", "Value": watch.target_group},
                        {"Name": "LoadBalancer", "Value": watch.load_balancer},
                    ],
                },
                "Period": PERIOD,
                "Stat": "Maximum",
            },
            "ReturnData": True,
        }
        for index, watch in enumerate(chunk)
    ]


def poll_due(last: float, now: float, interval: float) -> bool:
    """Whether a poll is due: once per ``interval``, at ALIGN seconds past the boundary."""
    return math.floor((now - ALIGN) / interval) > math.floor((last - ALIGN) / interval)


def window(now: float) -> tuple[datetime, datetime]:
    """Start and end of the query, on minute boundaries as CloudWatch aligns its periods."""
    end = (math.floor(now / PERIOD) + 1) * PERIOD
    return datetime.fromtimestamp(end - LOOKBACK - PERIOD, UTC), datetime.fromtimestamp(end, UTC)


@dataclass(frozen=True, slots=True)
class Reading:
    """A target group's latest UnHealthyHostCount (the most any of its load balancers counted)."""

    arn: str
    unhealthy: float
    period_end: float  # Unix time the datapoint's minute ends


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


def readings(chunk: Sequence[Watch], answer: Mapping[str, Any]) -> dict[str, Reading]:
    """The latest datapoint of each target group in one GetMetricData answer; series without data are left out."""
    latest: dict[str, Reading] = {}
    for result in answer.get("MetricDataResults") or ():
        if not isinstance(result, dict):
            continue
        ident = str(result.get("Id", ""))
        index = int(ident[1:]) if ident[:1] == "q" and ident[1:].isdigit() else -1
        if not 0 <= index < len(chunk):
            continue
        points = []
        for stamp, value in zip(result.get("Timestamps") or (), result.get("Values") or (), strict=False):
            moment = _epoch(stamp)
            if moment is not None and isinstance(value, int | float):
                points.append((moment, float(value)))
        if not points:
            continue
        moment, value = max(points)
        reading = Reading(chunk[index].arn, value, moment + PERIOD)
        latest[reading.arn] = later(latest.get(reading.arn), reading)
    return latest


def later(before: Reading | None, reading: Reading) -> Reading:
    """The more recent of two readings of one target group; in the same minute, the higher count
    (two load balancers sharing a target group: the target is unhealthy for one of them)."""
    if before is None:
        return reading
    return max(before, reading, key=lambda r: (r.period_end, r.unhealthy))


def unhealthy_count(health: TargetGroupHealth) -> int:
    return sum(1 for target in health.targets if target.state in UNHEALTHY_STATES)


def disagreements(
    found: Mapping[str, Reading], health: Mapping[str, TargetGroupHealth], acted_on: Mapping[str, float]
) -> list[Reading]:
    """Readings that say something lbdoctor's last read of the target group does not: a different count
    of unhealthy targets in a minute that ended after that read. ``acted_on`` holds, per target group,
    the datapoint already acted upon, so a stale CloudWatch value triggers at most one read."""
    changed = []
    for arn, reading in found.items():
        held = health.get(arn)
        if held is None or acted_on.get(arn) == reading.period_end:
            continue
        if reading.unhealthy != unhealthy_count(held) and held.fetched_at < reading.period_end:
            changed.append(reading)
    return changed


def chunks(items: Sequence[Watch]) -> Iterable[Sequence[Watch]]:
    for start in range(0, len(items), QUERIES_PER_CALL):
        yield items[start : start + QUERIES_PER_CALL]
