"""Readiness gates and TargetGroupBindings as metrics: from API JSON to the exposition, promtool-clean."""

from __future__ import annotations

import subprocess
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from exporter.aws.model import ApiProblem, AwsSnapshot, ProblemKind, TargetGroup
from exporter.kube import convert
from exporter.lb.readiness_gates import GateTracker, parse_time
from exporter.metrics.bindings import binding_rows, binding_steps
from exporter.model.index import ObjectIndex
from exporter.model.snapshot import ClusterSnapshot
from tests.conftest import require_tool

ARN = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/k8s-shop-web-0a1b2c3d4e/73e2d6bc24d8a067"
GONE = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/partner-feed/0123456789abcdef"
GATE = "target-health.elbv2.k8s.aws/k8s-shop-web-0a1b2c3d4e"


def pod_json(name: str, status: str | None, changed: str = "2026-11-27T00:01:00Z", **extra: Any) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "False"}]
    if status is not None:
        conditions.append(
            {"type": GATE, "status": status, "reason": "Target.Timeout", "message": "Request timed out", "lastTransitionTime": changed}
        )
    return {
        "metadata": {"namespace": "shop", "name": name, "creationTimestamp": "2026-11-27T00:00:00Z", **extra},
        "spec": {"nodeName": "n1", "readinessGates": [{"conditionType": GATE}, {"conditionType": "example.com/other"}]},
        "status": {"phase": "Running", "podIP": "10.0.1.7", "conditions": conditions},
    }


def binding_json(name: str, arn: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "shop", "name": name}, "spec": {"targetGroupARN": arn, "serviceRef": {"name": "web", "port": 80}}}


def event_json(binding: str, reason: str, when: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": f"{binding}.{reason}.{when[-6:-4]}"},
        "involvedObject": {"kind": "TargetGroupBinding", "namespace": "shop", "name": binding},
        "reason": reason,
        "message": "Failed reconcile due to TargetGroupNotFound",
        "type": "Warning",
        "lastTimestamp": when,
    }


def test_the_model_keeps_what_the_gate_metrics_need_and_only_for_gated_pods() -> None:
    pod = convert.pod(pod_json("web-1", "False"))
    [condition] = pod.conditions
    assert (condition.type, condition.last_transition_time, pod.created) == (GATE, "2026-11-27T00:01:00Z", "2026-11-27T00:00:00Z")
    plain = convert.pod({"metadata": {"name": "x", "creationTimestamp": "2026-11-27T00:00:00Z"}, "spec": {}, "status": {}})
    assert plain.created is None and plain.conditions == ()


def test_gate_rows_follow_pod_changes() -> None:
    tracker = GateTracker()
    waiting, ready, unset = (convert.pod(pod_json("web-1", "False")), convert.pod(pod_json("web-2", "True")), convert.pod(pod_json("web-3", None)))
    pods = ObjectIndex.of([waiting, ready, unset])
    tracker.update(pods, None)
    rows = {row.pod: row for row in tracker.rows()}
    assert set(rows) == {"web-1", "web-2", "web-3"}  # only the load balancer's gate, not example.com/other
    assert (rows["web-1"].binding, rows["web-1"].ready, rows["web-1"].reason) == ("k8s-shop-web-0a1b2c3d4e", False, "Target.Timeout")
    assert rows["web-1"].since == parse_time("2026-11-27T00:01:00Z")
    assert rows["web-3"].since == parse_time("2026-11-27T00:00:00Z")  # no verdict yet: waiting since creation
    assert rows["web-2"].ready
    bindings = ObjectIndex.of([convert.target_group_binding(binding_json("k8s-shop-web-0a1b2c3d4e", ARN))])
    assert tracker.waiting(bindings) == {ARN}
    # web-1 becomes ready, web-3 goes away: only the changes are looked at.
    now_ready = convert.pod(pod_json("web-1", "True", "2026-11-27T00:02:00Z"))
    tracker.update({}, {"shop/web-1": (waiting, now_ready), "shop/web-3": (unset, None)})
    assert {row.pod: row.ready for row in tracker.rows()} == {"web-1": True, "web-2": True}
    assert tracker.waiting(bindings) == set()


def snapshot_with_bindings() -> ClusterSnapshot:
    return ClusterSnapshot.of(
        target_group_bindings=[
            convert.target_group_binding(binding_json("k8s-shop-web-0a1b2c3d4e", ARN)),
            convert.target_group_binding(binding_json("partner-feed", GONE)),
        ],
        events=[
            convert.event(event_json("partner-feed", "FailedReconcile", "2026-11-27T00:03:00Z")),
            convert.event(event_json("partner-feed", "BackendNotFound", "2026-11-27T00:01:00Z")),
            convert.event(event_json("partner-feed", "SuccessfullyReconciled", "2026-11-27T00:09:00Z")),
        ],
    )


def test_binding_rows_say_whether_aws_knows_the_target_group_and_the_last_failure() -> None:
    problem = ApiProblem("elasticloadbalancing:DescribeTargetGroups", ProblemKind.NOT_FOUND, "not found")
    aws = AwsSnapshot(target_groups={ARN: TargetGroup(ARN, "k8s-shop-web-0a1b2c3d4e", "ip")}, missing={GONE: problem})
    rows = {row.name: row for row in binding_rows(snapshot_with_bindings(), aws)}
    assert (rows["k8s-shop-web-0a1b2c3d4e"].exists, rows["k8s-shop-web-0a1b2c3d4e"].error_reason) == (True, None)
    gone = rows["partner-feed"]
    assert (gone.exists, gone.target_group, gone.error_reason) == (False, "partner-feed", "FailedReconcile")
    assert gone.error_at == parse_time("2026-11-27T00:03:00Z")  # the latest failure; success events are not failures
    # Without AWS lbdoctor cannot say whether a target group exists.
    assert {row.exists for row in binding_rows(snapshot_with_bindings(), None)} == {None}


def exposition(now: float) -> str:
    tracker = GateTracker()
    tracker.update(ObjectIndex.of([convert.pod(pod_json("web-1", "False")), convert.pod(pod_json("web-2", "True"))]), None)
    problem = ApiProblem("elasticloadbalancing:DescribeTargetGroups", ProblemKind.NOT_FOUND, "not found")
    aws = AwsSnapshot(target_groups={ARN: TargetGroup(ARN, "k8s-shop-web-0a1b2c3d4e", "ip")}, missing={GONE: problem})
    out: list[str] = []
    for _ in binding_steps(tracker.rows(), binding_rows(snapshot_with_bindings(), aws), now, out):
        pass
    return "".join(out)


def test_the_families() -> None:
    now = parse_time("2026-11-27T00:11:00Z")
    assert now is not None
    samples: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(exposition(now)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    gate = (("namespace", "shop"), ("pod", "web-1"), ("targetgroupbinding", "k8s-shop-web-0a1b2c3d4e"))
    other = (("namespace", "shop"), ("pod", "web-2"), ("targetgroupbinding", "k8s-shop-web-0a1b2c3d4e"))
    assert samples["lbdoctor_readiness_gate_ready"] == {gate: 0, other: 1}
    assert samples["lbdoctor_readiness_gate_waiting_seconds"] == {gate: 600.0, other: 0.0}  # since 00:01, now 00:11
    exists = samples["lbdoctor_targetgroupbinding_target_group_exists"]
    assert exists == {
        (("namespace", "shop"), ("target_group", "k8s-shop-web-0a1b2c3d4e"), ("targetgroupbinding", "k8s-shop-web-0a1b2c3d4e")): 1,
        (("namespace", "shop"), ("target_group", "partner-feed"), ("targetgroupbinding", "partner-feed")): 0,
    }
    errors = samples["lbdoctor_targetgroupbinding_last_reconcile_error_timestamp_seconds"]
    assert errors == {(("namespace", "shop"), ("reason", "FailedReconcile"), ("targetgroupbinding", "partner-feed")): parse_time("2026-11-27T00:03:00Z")}


def test_the_exposition_passes_promtool() -> None:
    promtool = require_tool("promtool")
    checked = subprocess.run([promtool, "check", "metrics"], input=exposition(1.8e9), capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == "" and checked.stderr == ""
