"""The AWS API budget and freshness at 500 target groups, on a fake clock (the real collector and limiter).

The benchmark (bench/aws_refresh.py) measures the same against moto in real time; here the clock is
simulated so the property is checked in seconds: at the default budget lbdoctor's ELBv2 calls average at
most 2 a second, and a change of any target group's health shows within a bounded time — a change a
node agent's probe sees at once, one only the load balancer sees through CloudWatch's minute datapoints.
"""

from __future__ import annotations

import pytest

from bench.aws_refresh import simulate
from exporter.aws.config import AwsSettings

SECONDS = 240.0  # of changes: one target every 20 s turns unhealthy, and healthy again 120 s later


def worst(values: list[float | None]) -> float:
    assert None not in values, f"a change never showed: {values}"
    return max(v for v in values if v is not None)


async def test_the_default_budget_holds_and_changes_show_soon() -> None:
    result = await simulate(500, 20, SECONDS, 20.0)
    settings = AwsSettings(cluster_name="x")
    assert (settings.elbv2_rate, settings.elbv2_burst, settings.ec2_rate) == (2.0, 10, 2.0)
    # The measurement starts after the first pass, with the bucket drained: at most the rate.
    assert result["elbv2_per_second"] <= 2.0 + 1e-9
    delays = result["delays"]
    # A probe that starts failing makes its target group read in the next short round.
    assert worst(delays["probe-visible → unhealthy"]) <= 30
    assert worst(delays["probe-visible → healthy"]) <= 30
    # Only the load balancer sees it: CloudWatch's datapoint of the minute, asked 10 s after the minute.
    assert worst(delays["LB-only → unhealthy"]) <= 100
    assert worst(delays["LB-only → healthy"]) <= 30  # a target group with an unhealthy target is hot
    assert result["reads"]["cloudwatch"] >= 1
    assert result["watched"] == 500  # 500 groups are more than the budget sweeps in 60 s: the detector runs


@pytest.mark.slow
async def test_without_the_detector_the_sweep_misses_short_failures() -> None:
    """Control: the sweep alone reads 500 target groups in about 250 s at 2 calls a second, so a target
    unhealthy for two minutes often goes unseen. CloudWatch is what makes the difference."""
    result = await simulate(500, 20, SECONDS, 20.0, cloudwatch="off")
    assert result["elbv2_per_second"] <= 2.0 + 1e-9
    assert None in result["delays"]["LB-only → unhealthy"]
    assert "cloudwatch" not in result["reads"]


async def test_a_small_cluster_is_swept_within_the_interval_without_cloudwatch() -> None:
    result = await simulate(50, 20, 120.0, 20.0)
    assert result["watched"] == 0  # auto: the sweep reads 50 groups every 60 s within the budget
    assert "GetMetricData" not in result["per_minute"]
    assert worst(result["delays"]["LB-only → unhealthy"]) <= 70  # the 60 s sweep plus a round
    assert result["elbv2_per_second"] <= 2.0
