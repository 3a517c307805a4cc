"""The causal rules inside Kubernetes, on real results: real loopback apps as the pods, probed by the real
probers, judged by the node role's and the cluster role's checks, linked as each role links its round.
(AWS: tests/aws/test_causal_rules.py; kube-proxy rules: tests/dataplane/test_causal_rules.py.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from exporter.checks import NodeContext, evaluate_node
from exporter.checks.causes import link_round, order
from exporter.checks.cluster import cluster_results, evaluate_cluster
from exporter.checks.controller import ControllerLocation
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import build_plan
from exporter.lb.targets import ProbeTarget, TargetStatus, node_targets
from exporter.lb.thresholds import PredictedHealth
from exporter.model.objects import ContainerPort, Endpoint, EndpointSlice, ObjectMeta, Service, ServicePort
from exporter.model.results import Check, CheckResult, Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from exporter.probes import probe_http, probe_tcp
from exporter.report import results_from_json, results_json
from tests.builders import NODE, nlb, pod
from tests.conftest import next_ip
from tests.servers import Server, respond, unused_port

WHERE = ControllerLocation()


async def probed(target: ProbeTarget, times: int = 3) -> TargetStatus:
    """The target after ``times`` real probes, as the scheduler records them."""
    prober = probe_tcp if target.request.protocol == "TCP" else probe_http
    health = PredictedHealth()
    outcome = None
    for _ in range(times):
        outcome = await prober(target.request)
        health = health.after(outcome.success, target.thresholds)
    assert outcome is not None
    return TargetStatus(target, outcome, 1000.0, health, None if outcome.success else outcome)


async def node_round(snapshot: ClusterSnapshot) -> tuple[CheckResult, ...]:
    """What the node agent publishes after probing every target on its node for real."""
    plan = build_plan(snapshot, ControllerConfig())
    targets = node_targets(plan, snapshot, NODE)
    statuses = tuple([await probed(target) for target in targets.targets])
    return evaluate_node(NodeContext(NODE, snapshot, plan, targets, statuses, 1000.0))


def the(results: Sequence[CheckResult], check: Check, reason: Reason) -> CheckResult:
    [found] = [r for r in results if r.check is check and r.reason is reason]
    return found


def cause_of(results: Sequence[CheckResult], effect: CheckResult) -> CheckResult:
    assert effect.caused_by is not None, f"{effect.check} {effect.reason} names no cause"
    [cause] = [r for r in results if r.key == effect.caused_by]
    return cause


def slice_of(service: str, *endpoints: Endpoint) -> EndpointSlice:
    return EndpointSlice(ObjectMeta("shop", f"{service}-x", labels={"kubernetes.io/service-name": service}), service, "IPv4", endpoints)


async def test_a_crash_looping_pod_explains_no_ready_endpoints_and_its_failing_probe() -> None:
    ip = next_ip()  # nothing listens: the container keeps dying
    crashing = pod("web-1", ip=ip, waiting="CrashLoopBackOff", ready=False)
    snapshot = ClusterSnapshot.of(
        services=[nlb()],
        pods=[crashing],
        endpoint_slices=[slice_of("web", Endpoint((ip,), ready=False, node_name=NODE, pod_name="web-1"))],
    )
    node = await node_round(snapshot)
    crash = the(node, Check.POD_STATUS, Reason.CRASH_LOOP_BACK_OFF)
    probe = the(node, Check.HEALTH_PROBE, Reason.CONNECTION_REFUSED)
    assert probe.caused_by == crash.key and probe.remedy.startswith("caused by pod_status CrashLoopBackOff on Pod shop/web-1")
    central = evaluate_cluster(snapshot, ControllerConfig(), WHERE)
    endpoints = the(central, Check.ENDPOINTS, Reason.NO_READY_ENDPOINTS)
    assert cause_of(central, endpoints).reason is Reason.CRASH_LOOP_BACK_OFF
    # The cluster role reads the node agent's failing results: its report holds the probe too, under the pod.
    joined = order(link_round(list(central), results_from_json(results_json(node))))
    assert cause_of(joined, the(joined, Check.HEALTH_PROBE, Reason.CONNECTION_REFUSED)).key == crash.key


async def test_one_fine_pod_means_the_others_do_not_explain_missing_endpoints() -> None:
    """Causes are claimed only when they explain: with web-2 fine, web-1's crash loop is not why the Service
    has no endpoints (here: no EndpointSlice at all)."""
    snapshot = ClusterSnapshot.of(
        services=[nlb()], pods=[pod("web-1", waiting="CrashLoopBackOff", ready=False), pod("web-2", ip="10.0.0.2")]
    )
    central = evaluate_cluster(snapshot, ControllerConfig(), WHERE)
    assert the(central, Check.ENDPOINTS, Reason.NO_ENDPOINTS).caused_by is None


async def test_a_target_port_the_pod_does_not_expose_explains_the_refused_probe() -> None:
    """The app listens on the port it declares; the Service sends to another one, where nothing listens."""
    ip = next_ip()
    async with Server(ip, respond(200)) as app:
        declared = ContainerPort("http", app.port)
        web = nlb(ports=(ServicePort("http", 80, unused_port(ip)),))
        snapshot = ClusterSnapshot.of(services=[web], pods=[pod("web-1", ip=ip, ports=(declared,))])
        node = await node_round(snapshot)
    port = the(node, Check.TARGET_PORT, Reason.TARGET_PORT_NOT_EXPOSED)
    probe = the(node, Check.HEALTH_PROBE, Reason.CONNECTION_REFUSED)
    assert probe.caused_by == port.key
    assert "caused by target_port TargetPortNotExposed on Service shop/web (pod web-1)" in probe.remedy


async def test_a_target_port_of_another_service_explains_nothing() -> None:
    """Two Services select the pod; only one has the wrong targetPort. The other's refused probe (its app is
    down) is not blamed on it."""
    ip = next_ip()
    async with Server(ip, respond(200)) as app:
        wrong = nlb("wrong", selector={"app": "web"}, ports=(ServicePort("http", 80, unused_port(ip)),))
        right = nlb("right", selector={"app": "web"}, ports=(ServicePort("http", 80, app.port),))
        snapshot = ClusterSnapshot.of(services=[wrong, right], pods=[pod("web-1", ip=ip, ports=(ContainerPort("http", app.port),))])
        plan = build_plan(snapshot, ControllerConfig())
        targets = node_targets(plan, snapshot, NODE)
    # The app is gone by now: the right Service's probe is refused too, for its own reason.
    statuses = tuple([await probed(target) for target in targets.targets])
    node = evaluate_node(NodeContext(NODE, snapshot, plan, targets, statuses, 1000.0))
    refused = {r.object.name: r for r in node if r.check is Check.HEALTH_PROBE}
    assert refused["wrong"].caused_by is not None and refused["wrong"].caused_by[0] is Check.TARGET_PORT
    assert refused["right"].reason is Reason.CONNECTION_REFUSED and refused["right"].caused_by is None


async def test_a_named_target_port_no_pod_has_explains_no_endpoints() -> None:
    """The EndpointSlice controller publishes no endpoint for a pod without the named port."""
    web = Service(
        meta=ObjectMeta("shop", "web", annotations=nlb().meta.annotations),
        type="LoadBalancer",
        selector={"app": "web"},
        ports=(ServicePort("http", 80, "http-alt"),),
    )
    snapshot = ClusterSnapshot.of(services=[web], pods=[pod("web-1")], endpoint_slices=[slice_of("web")])
    central = evaluate_cluster(snapshot, ControllerConfig(), WHERE)
    cause = cause_of(central, the(central, Check.ENDPOINTS, Reason.NO_ENDPOINTS))
    assert (cause.check, cause.reason) == (Check.TARGET_PORT, Reason.NAMED_PORT_NOT_FOUND)
    assert cause.target is not None and cause.target.pod == "web-1"


@pytest.mark.parametrize("reason", ["FailedBuildModel"])
async def test_an_invalid_annotation_explains_the_controllers_failure_to_build(reason: str) -> None:
    from exporter.model.objects import KubeEvent
    from tests.builders import ALB_CLASS, ingress, service

    bad = ingress(annotations={"alb.ingress.kubernetes.io/healthcheck-interval-seconds": "often"})
    event = KubeEvent(ObjectMeta("shop", "web.1"), "Ingress", "shop", "web", reason, "invalid interval")
    snapshot = ClusterSnapshot.of(
        services=[service()], ingresses=[bad], ingress_classes=[ALB_CLASS], events=[event], pods=[pod()]
    )
    results = list(order(link_round(cluster_results(snapshot, ControllerConfig(), WHERE), [])))
    failure = the(results, Check.CONTROLLER, Reason.RECONCILE_FAILED)
    assert cause_of(results, failure).check is Check.INGRESS_ANNOTATIONS
    assert "caused by ingress_annotations InvalidAnnotation on Ingress shop/web" in failure.remedy


async def test_not_ready_pods_cause_the_probe_failure_not_the_other_way() -> None:
    """A pod whose readiness gate waits for the LB: the gate follows from the LB's verdict, so the pod's state
    is not offered as the cause of the probe (the probe is the root)."""
    ip = next_ip()
    gate = "target-health.elbv2.k8s.aws/k8s-shop-web-0123456789"
    gated = replace(pod("web-1", ip=ip), readiness_gates=(gate,))
    snapshot = ClusterSnapshot.of(services=[nlb()], pods=[gated])
    node = await node_round(snapshot)
    assert the(node, Check.POD_STATUS, Reason.READINESS_GATE_NOT_READY).status is Status.FAIL
    assert the(node, Check.HEALTH_PROBE, Reason.CONNECTION_REFUSED).caused_by is None

