"""Annotations cannot buy cost or reach: paths as AWS accepts them, instance ports only the Service's own,
bounded label values and series per object, and messages that never carry a tenant's value whole."""

from __future__ import annotations

import pytest

from exporter.lb import annotations as ann
from exporter.lb.aws_settings import RealHealthCheck
from exporter.lb.aws_settings import apply as apply_real_checks
from exporter.lb.healthcheck import ControllerConfig, resolve_alb, resolve_nlb
from exporter.lb.plan import build_plan, owner_plans
from exporter.lb.targets import TargetStatus, node_targets
from exporter.metrics.collectors import ProbeRenderer
from exporter.metrics.exposition import MAX_LABEL_VALUE, join_labels
from exporter.model.objects import Node, NodeAddress, ObjectMeta, ServicePort
from exporter.model.results import Check, ObjectRef, Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from tests.builders import ALB_CLASS, NODE, ingress, nlb, pod, service

CONTROLLER = ControllerConfig()
NODE_IP = "10.0.1.23"
THIS_NODE = Node(ObjectMeta("", NODE), (NodeAddress("InternalIP", NODE_IP),))
HTTP_NLB = {ann.NLB_HC_PROTOCOL: "http"}


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/healthz",
        "/health-check_v2.json",
        "/a/b/c?x=1&y=%20z#frag",
        "/@me:8080/~user+x=y",
        "/AWS.ALB/healthcheck",
        "/" + "a" * 1023,
    ],
)
def test_paths_aws_accepts_are_probed(path: str) -> None:
    resolution = resolve_nlb(nlb(annotations={**HTTP_NLB, ann.NLB_HC_PATH: path}), CONTROLLER)
    assert resolution.problems == ()
    assert resolution.spec.path == path


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/" + "a" * 1024, "1025 characters long; AWS accepts at most 1024"),
        ("/" + "x" * 200_000, "200001 characters long"),
        ("healthz", "not a path starting with /"),
        ("/a b", "characters AWS does not accept"),
        ("/ok\r\nX-Injected: 1", "characters AWS does not accept"),
        ("/{__typename}", "characters AWS does not accept"),
        ("/caf\u00e9", "characters AWS does not accept"),
        ("http://evil/", "not a path starting with /"),
    ],
)
def test_paths_aws_rejects_are_findings_and_the_default_is_probed(path: str, fragment: str) -> None:
    resolution = resolve_nlb(nlb(annotations={**HTTP_NLB, ann.NLB_HC_PATH: path}), CONTROLLER)
    [problem] = resolution.problems
    assert problem.reason is Reason.INVALID_ANNOTATION and problem.status is Status.FAIL
    assert fragment in problem.message
    assert resolution.spec.path == "/"
    assert len(problem.message) < 600  # a 200 KB annotation is named, not copied


def test_a_huge_annotation_is_quoted_by_its_head_and_length() -> None:
    value = "x" * 200_000
    resolution = resolve_alb(ingress(annotations={ann.ALB_HC_INTERVAL: value}), service(), CONTROLLER)
    [problem] = resolution.problems
    assert "… (200000 characters)" in problem.message and len(problem.message) < 500


def test_huge_success_codes_stay_a_small_matcher() -> None:
    codes = ",".join(["200"] * 50_000 + ["201-204"] * 10_000)
    resolution = resolve_nlb(nlb(annotations={**HTTP_NLB, ann.NLB_SUCCESS_CODES: codes}), CONTROLLER)
    assert resolution.problems == ()
    matcher = resolution.spec.success_codes
    assert matcher is not None and matcher.ranges == ((200, 204),) and str(matcher) == "200-204"
    bad = resolve_nlb(nlb(annotations={**HTTP_NLB, ann.NLB_SUCCESS_CODES: "200," + "9" * 100_000}), CONTROLLER)
    [problem] = bad.problems
    assert problem.reason is Reason.INVALID_SUCCESS_CODES and len(problem.message) < 500


def instance_nlb(port: str, **spec: object) -> object:
    return nlb(annotations={ann.NLB_TARGET_TYPE: "instance", ann.NLB_HC_PORT: port}, **spec)


def test_an_instance_health_check_port_that_is_not_the_services_is_a_finding_and_never_probed() -> None:
    """healthcheck-port: 10250 on an instance-target Service would make every node agent call its own
    kubelet; it is reported and the default (the traffic port's NodePort) is probed instead."""
    svc = instance_nlb("10250")
    resolution = resolve_nlb(svc, CONTROLLER)  # type: ignore[arg-type]
    [problem] = resolution.problems
    assert problem.reason is Reason.HEALTH_CHECK_PORT_NOT_IN_SERVICE and problem.check is Check.SERVICE_ANNOTATIONS
    assert "not a NodePort" in problem.message and "30080" in problem.message
    snapshot = ClusterSnapshot.of(services=[svc], pods=[pod()], nodes=[THIS_NODE])
    found = node_targets(build_plan(snapshot, CONTROLLER), snapshot, NODE).targets
    assert found and all(t.request.port != 10250 for t in found)
    assert {(t.request.ip, t.request.port) for t in found} == {(NODE_IP, 30080), ("10.0.0.1", 8080)}


def test_the_services_node_ports_and_health_check_node_port_are_allowed() -> None:
    two = (ServicePort("http", 80, 8080, node_port=30080), ServicePort("admin", 9000, 9000, node_port=30900))
    for port, spec in (("30900", {"ports": two}), ("32000", {"health_check_node_port": 32000})):
        resolution = resolve_nlb(instance_nlb(port, **spec), CONTROLLER)  # type: ignore[arg-type]
        assert resolution.problems == () and resolution.spec.port == int(port)


def test_ip_targets_keep_any_port_of_their_pod() -> None:
    resolution = resolve_nlb(nlb(annotations={ann.NLB_HC_PORT: "10250"}), CONTROLLER)
    assert resolution.problems == () and resolution.spec.port == 10250


def test_no_source_makes_a_node_agent_probe_a_port_the_service_does_not_own() -> None:
    """Even target-group settings published by the cluster role (from AWS, or forged) cannot send a probe to
    another port of the node, nor a path AWS would reject."""
    svc = nlb(annotations={ann.NLB_TARGET_TYPE: "instance"})
    snapshot = ClusterSnapshot.of(services=[svc], pods=[pod()], nodes=[THIS_NODE])
    plan = build_plan(snapshot, CONTROLLER)

    def real(port: int | str, path: str) -> RealHealthCheck:
        return RealHealthCheck(
            arn="arn:tg",
            target_group="k8s-shop-web",
            owner=ObjectRef("Service", "shop", "web"),
            service="web",
            service_port=80,
            target_type="instance",
            protocol="HTTP",
            port=port,
            path=path,
            success_codes="200",
            protocol_version=None,
            interval=10,
            timeout=5,
            healthy_threshold=3,
            unhealthy_threshold=3,
        )

    kubelet = node_targets(apply_real_checks(plan, [real(10250, "/healthz")]), snapshot, NODE).targets
    assert kubelet == ()
    injected = node_targets(apply_real_checks(plan, [real(30080, "/x\r\nHost: evil")]), snapshot, NODE).targets
    assert injected == ()
    fine = node_targets(apply_real_checks(plan, [real(30080, "/ready")]), snapshot, NODE).targets
    assert {t.request.path for t in fine} == {"/ready"}


def test_label_values_are_bounded_and_stay_distinct() -> None:
    long_a, long_b = "/" + "a" * 1000, "/" + "a" * 999 + "b"
    text_a = join_labels(("path",), (long_a,))
    text_b = join_labels(("path",), (long_b,))
    assert len(text_a) <= len('path=""') + MAX_LABEL_VALUE
    assert text_a != text_b
    assert join_labels(("path",), ("/healthz",)) == 'path="/healthz"'
    assert join_labels(("path",), ("/" + "a" * 255,)) == 'path="/' + "a" * 255 + '"'


def test_a_long_path_aws_accepts_makes_series_of_bounded_size() -> None:
    path = "/" + "p" * 1023
    svc = nlb(annotations={**HTTP_NLB, ann.NLB_HC_PATH: path})
    snapshot = ClusterSnapshot.of(services=[svc], pods=[pod()])
    [target] = node_targets(build_plan(snapshot, CONTROLLER), snapshot, NODE).targets
    assert target.request.path == path  # probed as AWS would
    text = "".join(ProbeRenderer().render([TargetStatus(target)]))
    assert max(len(line) for line in text.splitlines()) < 600


def test_one_object_makes_at_most_a_bounded_number_of_target_groups() -> None:
    ports = tuple(ServicePort(f"p{i}", 1000 + i, 8000 + i, node_port=30000 + i) for i in range(150))
    svc = nlb(ports=ports)
    snapshot = ClusterSnapshot.of(services=[svc], pods=[pod()])
    plan = build_plan(snapshot, CONTROLLER)
    assert len(plan.backends) == ann.MAX_TARGET_GROUPS_PER_OWNER
    [owner] = [o for o in owner_plans(plan) if o.owner == ObjectRef("Service", "shop", "web")]
    problems = [p for p in owner.problems if p.check is Check.SERVICE_ANNOTATIONS]
    assert [p.reason for p in problems] == [Reason.TOO_MANY_TARGET_GROUPS]
    assert "150 target groups" in problems[0].message
    alb = ingress(annotations={ann.ALB_HC_PATH: "/x"})
    alb_snapshot = ClusterSnapshot.of(services=[service()], ingresses=[alb], ingress_classes=[ALB_CLASS], pods=[pod()])
    assert len(build_plan(alb_snapshot, CONTROLLER).backends) == 1
