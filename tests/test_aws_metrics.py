"""The AWS metric families: one series per known state, transitions, API requests; promtool-clean."""

from __future__ import annotations

import subprocess

from prometheus_client.parser import text_string_to_metric_families

from exporter.aws.metrics import render_aws
from exporter.aws.model import TARGET_STATES, AwsSnapshot, TargetGroupHealth
from exporter.checks.aws_round import ElbTargetRow
from tests.conftest import require_tool

ROWS = [
    ElbTargetRow("k8s-shop-web", "shop", "web", "10.0.10.21", 8080, "unhealthy", "Target.Timeout", 3, "web-1", "node-a"),
    ElbTargetRow("k8s-shop-api", "shop", "api", "i-0abc", 30080, "healthy", None, 0, None, "node-a"),
    ElbTargetRow("k8s-odd", "", "", "10.0.0.9", None, "future-state", None, 0, None, None),
]
REQUESTS = {("DescribeTargetHealth", "success"): 12, ("DescribeTargetHealth", "throttled"): 1, ("DescribeTargetHealth", "retried"): 2}
AWS = AwsSnapshot(
    taken_at=1000.0,
    health={"arn:a": TargetGroupHealth("arn:a", (), 940.0), "arn:b": TargetGroupHealth("arn:b", (), 990.0)},
    api_requests=REQUESTS,
    target_health_reads={"sweep": 40, "cloudwatch": 2},
    budgets={"elbv2": (2.0, 10), "ec2": (2.0, 10), "cloudwatch": (1.0, 5)},
    budget_waited={"elbv2": 12.5, "ec2": 0.0, "cloudwatch": 0.0},
    cloudwatch_watched=498,
)


def _families() -> dict[str, list[tuple[dict[str, str], float]]]:
    text = "".join(render_aws(ROWS, AWS, now=1010.0))
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_one_series_per_known_state() -> None:
    states = [s for s in _families()["lbdoctor_elb_target_state"] if s[0]["target"] == "10.0.10.21"]
    assert {labels["state"] for labels, _ in states} == set(TARGET_STATES)
    assert [labels["state"] for labels, value in states if value == 1] == ["unhealthy"]
    labels = states[0][0]
    assert (labels["target_group"], labels["namespace"], labels["service"], labels["port"]) == ("k8s-shop-web", "shop", "web", "8080")


def test_a_state_newer_than_lbdoctor_still_shows() -> None:
    odd = [s for s in _families()["lbdoctor_elb_target_state"] if s[0]["target"] == "10.0.0.9"]
    assert [labels["state"] for labels, value in odd if value == 1] == ["future-state"]


def test_transitions_and_requests() -> None:
    families = _families()
    transitions = {labels["target"]: value for labels, value in families["lbdoctor_elb_target_transitions_total"]}
    assert transitions == {"10.0.10.21": 3, "i-0abc": 0, "10.0.0.9": 0}
    requests = {(labels["operation"], labels["outcome"]): value for labels, value in families["lbdoctor_aws_api_requests_total"]}
    assert requests == REQUESTS


def test_the_budget_the_triggers_and_the_freshness() -> None:
    families = _families()
    budget = {labels["service"]: value for labels, value in families["lbdoctor_aws_api_budget_requests_per_second"]}
    assert budget == {"elbv2": 2.0, "ec2": 2.0, "cloudwatch": 1.0}
    burst = {labels["service"]: value for labels, value in families["lbdoctor_aws_api_budget_burst"]}
    assert burst == {"elbv2": 10, "ec2": 10, "cloudwatch": 5}
    waited = {labels["service"]: value for labels, value in families["lbdoctor_aws_api_budget_wait_seconds_total"]}
    assert waited["elbv2"] == 12.5
    reads = {labels["trigger"]: value for labels, value in families["lbdoctor_aws_target_health_reads_total"]}
    assert reads == {"sweep": 40, "cloudwatch": 2}
    assert families["lbdoctor_aws_target_health_oldest_age_seconds"] == [({}, 70.0)]  # now 1010 - read at 940
    assert families["lbdoctor_aws_cloudwatch_watched_target_groups"] == [({}, 498)]


def test_the_exposition_passes_promtool() -> None:
    promtool = require_tool("promtool")
    text = "".join(render_aws(ROWS, AWS, now=1010.0))
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == "" and checked.stdout == ""
