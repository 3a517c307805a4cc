"""The collectors render only the published results; series of vanished targets disappear."""

from __future__ import annotations

import subprocess

from exporter.lb.targets import TargetStatus
from exporter.lb.thresholds import LbState, PredictedHealth
from exporter.metrics.collectors import ProbeRenderer, render_checks
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.model.probe import ProbeOutcome
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, ResultSet, Status
from tests.conftest import require_tool
from tests.test_scheduler import target


def test_check_status_has_one_series_per_status_and_worst_wins() -> None:
    web = ObjectRef("Service", "shop", "web")
    results = ResultSet(
        1,
        0.0,
        (
            CheckResult(Check.HEALTH_PROBE, Status.OK, None, web, "ok"),
            CheckResult(Check.HEALTH_PROBE, Status.FAIL, Reason.TIMEOUT, web, "slow"),
            CheckResult(Check.HEALTH_PROBE, Status.WARN, Reason.CONNECTION_REFUSED, web, "refused"),
        ),
    )
    text = "".join(render_checks(results))
    base = 'check="health_probe",namespace="shop",kind="Service",name="web"'
    assert f'lbdoctor_check_status{{{base},status="fail"}} 1' in text
    for other in ("ok", "warn", "unknown"):
        assert f'lbdoctor_check_status{{{base},status="{other}"}} 0' in text
    assert f'lbdoctor_check_failure_reason{{{base},reason="Timeout"}} 1' in text
    assert f'lbdoctor_check_failure_reason{{{base},reason="ConnectionRefused"}} 1' in text


def test_probe_series_follow_the_targets_and_escape_labels() -> None:
    renderer = ProbeRenderer()
    odd = target('we"ird\\pod')
    failing = TargetStatus(
        odd,
        ProbeOutcome(False, Reason.TIMEOUT, 2.0, phases=(("connect", 0.001),)),
        1700000000.0,
        PredictedHealth(LbState.UNHEALTHY, 0, 2, 1),
    )
    text = "".join(renderer.render([failing]))
    assert 'pod="we\\"ird\\\\pod"' in text
    assert 'reason="Timeout"} 1' in text
    assert "lbdoctor_probe_predicted_healthy{" in text and "} 0\n" in text
    assert "lbdoctor_probe_last_timestamp_seconds{" in text
    assert "ird" not in "".join(renderer.render([]))  # gone at the next scrape


def test_full_exposition_passes_promtool() -> None:
    promtool = require_tool("promtool")
    renderer = ProbeRenderer()
    statuses = [TargetStatus(target("a"), ProbeOutcome(True, None, 0.01, 200, (("connect", 0.001),)), 1.0)]
    web = ObjectRef("Service", "shop", "web")
    checks = ResultSet(1, 0.0, (CheckResult(Check.SELECTOR, Status.FAIL, Reason.NO_PODS_MATCH_SELECTOR, web, "x"),))
    metrics = SelfMetrics("node")
    metrics.error("kube", "timeout")
    metrics.watch_restarted("pods", "expired")
    metrics.probe_lag(0.002)
    text = "".join([*render_checks(checks), *renderer.render(statuses)]) + metrics.render().decode()
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert "lbdoctor_errors_total" in text and "lbdoctor_build_info{" in text and "_created" not in text
