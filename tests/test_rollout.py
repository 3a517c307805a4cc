"""The rollout check, Kubernetes side: deregistration delay vs the pods' termination grace and preStop hooks."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.checks import rollout
from exporter.checks.cluster import evaluate_cluster
from exporter.checks.controller import ControllerLocation
from exporter.kube import convert
from exporter.lb import annotations as ann
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import plan_all
from exporter.model.results import Check, Reason, Status
from tests import gateway_objects as g


def pod(name: str, grace: int | None = 30, hook: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    manifest = g.pod(name)
    container = manifest["spec"]["containers"][0]
    if grace is not None:
        manifest["spec"]["terminationGracePeriodSeconds"] = grace
    if hook is not None:
        container["lifecycle"] = {"preStop": hook}
    manifest["metadata"].update(meta)
    return manifest


def nlb(attributes: str | None = None, target_type: str = "ip") -> dict[str, Any]:
    service = g.svc(type_="LoadBalancer")
    service["metadata"]["annotations"] = {ann.NLB_TYPE: "external", ann.NLB_TARGET_TYPE: target_type}
    if attributes is not None:
        service["metadata"]["annotations"][ann.NLB_TARGET_GROUP_ATTRIBUTES] = attributes
    return service


def verdicts(*objects: dict[str, Any]) -> list[tuple[Status, Reason | None]]:
    snap = g.snapshot(*objects)
    [plan] = plan_all(snap, ControllerConfig())
    service = snap.services["shop/web"]
    found = rollout.evaluate_service(service, tuple(snap.pods.values()), plan.backends)
    return [(r.status, r.reason) for r in found]


def test_defaults_open_the_window() -> None:
    """No preStop hook, a 30 s grace period against AWS's 300 s default delay: both findings."""
    assert verdicts(nlb(), pod("web-1", grace=None)) == [
        (Status.WARN, Reason.NO_PRE_STOP_HOOK),
        (Status.WARN, Reason.GRACE_PERIOD_SHORTER_THAN_DEREGISTRATION_DELAY),
    ]


@pytest.mark.parametrize(
    "hook",
    [
        {"sleep": {"seconds": 15}},
        {"exec": {"command": ["sleep", "15"]}},
        {"exec": {"command": ["/bin/sh", "-c", "sleep 15; nginx -s quit"]}},
        {"httpGet": {"path": "/drain", "port": 8080}},
    ],
)
def test_a_pre_stop_hook_and_a_short_delay_close_it(hook: dict[str, Any]) -> None:
    assert verdicts(nlb("deregistration_delay.timeout_seconds=30"), pod("web-1", grace=60, hook=hook)) == [
        (Status.OK, None)
    ]


def test_pre_stop_sleep_as_long_as_the_grace_period() -> None:
    found = verdicts(nlb("deregistration_delay.timeout_seconds=20"), pod("web-1", grace=30, hook={"sleep": {"seconds": 30}}))
    assert found == [(Status.WARN, Reason.PRE_STOP_LONGER_THAN_GRACE_PERIOD)]


def test_instance_targets_are_not_judged_by_their_pods() -> None:
    assert verdicts(nlb(target_type="instance"), pod("web-1")) == []


def test_message_names_the_pods_and_the_target_group() -> None:
    snap = g.snapshot(nlb(), *(pod(f"web-{i}", grace=30) for i in range(5)))
    results = [r for r in evaluate_cluster(snap, ControllerConfig(), ControllerLocation()) if r.check is Check.ROLLOUT]
    grace = next(r for r in results if r.reason is Reason.GRACE_PERIOD_SHORTER_THAN_DEREGISTRATION_DELAY)
    assert grace.object.kind == "Service" and grace.object.name == "web"
    assert "(web-0, web-1, web-2 and 2 more)" in grace.message
    assert "target groups: Service shop/web: 300 s" in grace.message and "drain for 300 s" in grace.message
    hook = next(r for r in results if r.reason is Reason.NO_PRE_STOP_HOOK)
    assert hook.message.startswith("5 of 5 pods of Service shop/web")


def test_pre_stop_parsing() -> None:
    parsed = convert.pod(pod("web-1", hook={"exec": {"command": ["sh", "-c", "sleep 5s && kill 1"]}}))
    assert [(h.action, h.seconds) for h in parsed.pre_stop] == [("exec", 5.0)]
    parsed = convert.pod(pod("web-1", hook={"exec": {"command": ["/app/drain"]}}))
    assert [(h.action, h.seconds) for h in parsed.pre_stop] == [("exec", None)]
    deleting = convert.pod(pod("web-1", deletionTimestamp="2026-11-27T00:00:30Z", deletionGracePeriodSeconds=30))
    assert deleting.meta.deletion_deadline == 1795737630.0 and deleting.termination_grace == 30


def test_a_hand_made_target_groups_delay_is_not_guessed() -> None:
    """A TargetGroupBinding to a target group the controller did not create: its delay lives in AWS only."""
    from exporter.lb.plan import plan_binding
    from exporter.model.objects import ObjectMeta, TargetGroupBinding

    service = g.svc(type_="ClusterIP")
    snap = g.snapshot(service, pod("web-1", grace=30, hook={"sleep": {"seconds": 10}}))
    plan = plan_binding(TargetGroupBinding(ObjectMeta("shop", "mine"), "arn:…", "ip", "web", 80), snap)
    assert plan is not None
    assert rollout.evaluate_service(snap.services["shop/web"], tuple(snap.pods.values()), plan.backends) == []
