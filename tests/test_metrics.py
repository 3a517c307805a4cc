"""The collectors render only the published results; series of vanished targets disappear."""

from __future__ import annotations

import subprocess

from exporter.checks import health_probe
from exporter.checks.causes import link_round
from exporter.checks.cluster import cluster_results
from exporter.checks.controller import ControllerLocation
from exporter.checks.registry import Role
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import build_plan
from exporter.lb.targets import TargetStatus, node_targets
from exporter.lb.thresholds import LbState, PredictedHealth
from exporter.metrics.collectors import ProbeRenderer, render_checks
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.model.probe import ProbeOutcome
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, ResultSet, Status
from exporter.model.snapshot import ClusterSnapshot
from tests.builders import NODE, nlb, pod
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


def test_the_root_cause_view_and_the_roles_own_checks() -> None:
    """The cluster role's round, linked with a node agent's failing probe: its own steps have status series
    and root causes; the agent's probe (which the agent publishes itself) shows only as an effect, with the
    cause it follows from."""

    crashing = pod(waiting="CrashLoopBackOff", ready=False)
    snapshot = ClusterSnapshot.of(services=[nlb()], pods=[crashing])
    [probe_target] = node_targets(build_plan(snapshot, ControllerConfig()), snapshot, NODE).targets
    refused = ProbeOutcome(False, Reason.CONNECTION_REFUSED, 0.001, detail="connection refused")
    status = TargetStatus(probe_target, refused, 1.0, PredictedHealth(LbState.UNHEALTHY, 0, 3), refused)
    own = cluster_results(snapshot, ControllerConfig(), ControllerLocation(), include_controller=False)
    linked = link_round(own, [health_probe.verdict(status, 1.0)])
    text = "".join(render_checks(ResultSet(1, 1.0, tuple(linked)), Role.CLUSTER))
    pod_labels = 'check="pod_status",namespace="shop",kind="Pod",name="web-1"'
    assert f'lbdoctor_check_root_cause{{{pod_labels},reason="CrashLoopBackOff"}} 1' in text
    assert 'lbdoctor_check_status{check="health_probe"' not in text
    assert 'lbdoctor_check_root_cause{check="health_probe"' not in text
    assert (
        'lbdoctor_check_caused_by{check="health_probe",namespace="shop",kind="Service",name="web",'
        'reason="ConnectionRefused",cause_check="pod_status",cause_namespace="shop",cause_kind="Pod",'
        'cause_name="web-1",cause_reason="CrashLoopBackOff"} 1'
    ) in text
    # The node agent's own view: the probe has status series, and (having its cause) is no root.
    node_text = "".join(render_checks(ResultSet(1, 1.0, tuple(linked)), Role.NODE))
    assert (
        'lbdoctor_check_status{check="health_probe",namespace="shop",kind="Service",name="web",status="fail"} 1'
        in node_text
    )
    assert 'lbdoctor_check_root_cause{check="health_probe"' not in node_text
