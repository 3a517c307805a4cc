"""The collectors render only the published results; series of vanished targets disappear."""

from __future__ import annotations

import subprocess
from dataclasses import replace

from exporter.checks import health_probe
from exporter.checks.causes import link_round
from exporter.checks.cluster import cluster_results
from exporter.checks.controller import ControllerLocation
from exporter.checks.registry import Role
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import build_plan
from exporter.lb.targets import TargetStatus, node_targets
from exporter.lb.thresholds import LbState, PredictedHealth
from exporter.metrics.collectors import ProbeRenderer, render_checks, select
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.model.objects import Endpoint, EndpointSlice, ObjectMeta, PreStopHook
from exporter.model.probe import ProbeOutcome
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, ResultSet, Status
from exporter.model.snapshot import ClusterSnapshot
from exporter.roles.cluster_evaluator import IncrementalEvaluator
from tests.builders import ALB_CLASS, NODE, ingress, nlb, pod, service
from tests.conftest import require_tool
from tests.test_scheduler import target

DELAY_30 = "deregistration_delay.timeout_seconds=30"


def test_check_status_has_one_series_per_object_and_the_worst_status() -> None:
    """Without a rollup (a report of its own) each result is its object's row: one series, the worst status."""
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
    assert text.count("lbdoctor_check_status{") == 1
    assert f'lbdoctor_check_failure_reason{{{base},reason="Timeout"}} 1' in text
    assert f'lbdoctor_check_failure_reason{{{base},reason="ConnectionRefused"}} 1' in text


def test_a_healthy_pod_costs_no_series() -> None:
    """The cluster role's round of a Service behind an Ingress: status per load balancer and check; the pods
    and the Service itself have series only while they do not pass."""
    # Pods that also pass the rollout step: a preStop sleep, and a grace period above the 30 s deregistration
    # delay the Ingress sets.
    drained = {"pre_stop": (PreStopHook("app", "sleep", 15.0),), "termination_grace": 45}
    pods = [replace(pod(f"web-{index}", ip=f"10.0.0.{index}"), **drained) for index in range(1, 50)]
    crashing = replace(pod("web-50", ip="10.0.0.50", waiting="CrashLoopBackOff", ready=False), **drained)
    endpoints = tuple(Endpoint((p.pod_ip or "",), ready=p is not crashing, pod_name=p.meta.name) for p in pods)
    eps = EndpointSlice(
        ObjectMeta("shop", "web-x", labels={"kubernetes.io/service-name": "web"}), "web", "IPv4", endpoints
    )
    snapshot = ClusterSnapshot.of(
        services=[service()],
        pods=[*pods, crashing],
        endpoint_slices=[eps],
        ingresses=[ingress(annotations={"alb.ingress.kubernetes.io/target-group-attributes": DELAY_30})],
        ingress_classes=[ALB_CLASS],
    )
    evaluator = IncrementalEvaluator(ControllerConfig(), ControllerLocation(), include_controller=False)
    results = evaluator.evaluate(snapshot, None)
    text = "".join(render_checks(ResultSet(1, 1.0, results, evaluator.rollup()), Role.CLUSTER))
    assert 'lbdoctor_check_status{check="rollout",namespace="shop",kind="Ingress",name="web",status="ok"} 1' in text
    owner = 'namespace="shop",kind="Ingress",name="web"'
    assert f'lbdoctor_check_status{{check="pod_status",{owner},status="fail"}} 1' in text  # the worst pod
    assert f'lbdoctor_check_status{{check="selector",{owner},status="ok"}} 1' in text  # the Service's steps
    assert f'lbdoctor_check_status{{check="ingress_annotations",{owner},status="ok"}} 1' in text
    assert 'kind="Pod"' not in text.split("# HELP lbdoctor_check_failure_reason")[0]  # no status series per pod
    assert 'kind="Service"' not in text
    crash = 'check="pod_status",namespace="shop",kind="Pod",name="web-50"'
    assert f'lbdoctor_check_failure_reason{{{crash},reason="CrashLoopBackOff"}} 1' in text
    assert f'lbdoctor_check_root_cause{{{crash},reason="CrashLoopBackOff"}} 1' in text
    assert 'name="web-1"' not in text
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    # 49 healthy pods more cost nothing: the rows of one owner, the crash loop's own series, the omitted counts.
    assert len(series) < 30, series


def test_per_object_series_stay_within_the_budget_worst_first() -> None:
    refs = [ObjectRef("Pod", "shop", f"p{index:02d}") for index in range(40)]
    root = CheckResult(
        Check.CONTROLLER, Status.FAIL, Reason.CONTROLLER_ACCESS_DENIED, ObjectRef("Deployment", "kube-system", "c"), "x"
    )
    warnings = [CheckResult(Check.POD_STATUS, Status.WARN, Reason.POD_NOT_RUNNING, ref, "w") for ref in refs[:20]]
    failures = [CheckResult(Check.POD_STATUS, Status.FAIL, Reason.CRASH_LOOP_BACK_OFF, ref, "f") for ref in refs[20:]]
    effect = CheckResult(
        Check.INGRESS_ANNOTATIONS, Status.FAIL, Reason.INVALID_ANNOTATION, ObjectRef("Ingress", "shop", "i"), "e",
        caused_by=root.key,
    )  # fmt: skip
    results = ResultSet(1, 0.0, (*warnings, *failures, effect, root))
    selection = select(results, Role.CLUSTER, budget=25)
    # The controller's root cause (2 series) first, then failing pods (2 each) before warning ones (2 each);
    # the effect (failure reason and caused_by) comes after every root that fails.
    assert ("controller", "kube-system", "Deployment", "c") in selection.shown
    shown_pods = sorted(key[3] for key in selection.shown if key[2] == "Pod")
    assert shown_pods == [f"p{index:02d}" for index in range(20, 31)]  # 11 failing pods fit in 25 - 2
    assert selection.omitted["pod_status"] == 29 and selection.omitted["ingress_annotations"] == 1
    text = "".join(render_checks(results, Role.CLUSTER, budget=25))
    own = [
        line
        for line in text.splitlines()
        if line.startswith(
            ("lbdoctor_check_failure_reason{", "lbdoctor_check_root_cause{", "lbdoctor_check_caused_by{")
        )
    ]
    assert len(own) == 24
    assert 'lbdoctor_check_objects_omitted{check="pod_status"} 29' in text
    assert 'lbdoctor_check_objects_omitted{check="controller"} 0' in text
    assert sum('kind="Pod",name="p' in line for line in own) == 22  # 11 pods x (failure reason, root cause)
    everything = "".join(render_checks(results, Role.CLUSTER))
    assert 'lbdoctor_check_objects_omitted{check="pod_status"} 0' in everything


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
