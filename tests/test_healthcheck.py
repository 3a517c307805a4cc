"""Health-check resolution: the controller's defaults, annotation overrides, and findings for bad values."""

from __future__ import annotations

import pytest

from exporter.lb import annotations as ann
from exporter.lb.healthcheck import ControllerConfig, resolve_alb, resolve_nlb
from exporter.model.objects import ServicePort
from exporter.model.results import Check, Reason, Status
from tests.builders import ingress, nlb, service

CONTROLLER = ControllerConfig()


def test_alb_defaults() -> None:
    """ALB: HTTP / 200 every 15 s, timeout 5 s, 2/2, instance targets unless told otherwise."""
    resolution = resolve_alb(ingress(annotations={ann.ALB_TARGET_TYPE: "ip"}), service(), CONTROLLER)
    spec = resolution.spec
    assert (spec.protocol, spec.path, str(spec.success_codes)) == ("HTTP", "/", "200")
    assert (spec.interval, spec.timeout, spec.healthy_threshold, spec.unhealthy_threshold) == (15, 5, 2, 2)
    assert spec.port == "traffic-port" and spec.target_type == "ip"
    assert resolution.problems == ()


def test_alb_service_annotation_wins_over_ingress() -> None:
    resolution = resolve_alb(
        ingress(annotations={ann.ALB_HC_PATH: "/from-ingress", ann.ALB_HC_INTERVAL: "30"}),
        service(annotations={ann.ALB_HC_PATH: "/from-service"}),
        CONTROLLER,
    )
    assert resolution.spec.path == "/from-service"
    assert resolution.spec.interval == 30


def test_alb_grpc_defaults() -> None:
    spec = resolve_alb(ingress(annotations={ann.ALB_BACKEND_PROTOCOL_VERSION: "GRPC"}), service(), CONTROLLER).spec
    assert spec.path == "/AWS.ALB/healthcheck" and str(spec.success_codes) == "12"


def test_nlb_defaults_ip_targets() -> None:
    spec = resolve_nlb(nlb(), CONTROLLER).spec
    assert (spec.protocol, spec.path, spec.success_codes) == ("TCP", None, None)
    assert (spec.interval, spec.timeout, spec.healthy_threshold, spec.unhealthy_threshold) == (10, 10, 3, 3)
    assert spec.target_type == "ip" and not spec.node_health_check


def test_nlb_instance_local_checks_the_health_check_node_port() -> None:
    """docs/health-check-defaults.md §3, Local: instance + externalTrafficPolicy Local → HTTP /healthz, hc port."""
    svc = nlb(
        annotations={ann.NLB_TARGET_TYPE: "instance"},
        external_traffic_policy="Local",
        health_check_node_port=31999,
    )
    spec = resolve_nlb(svc, CONTROLLER).spec
    assert (spec.protocol, spec.port, spec.path, spec.timeout) == ("HTTP", 31999, "/healthz", 6)
    assert (spec.healthy_threshold, spec.unhealthy_threshold) == (2, 2)
    assert spec.node_health_check


def test_nlb_path_is_ignored_with_tcp() -> None:
    resolution = resolve_nlb(nlb(annotations={ann.NLB_HC_PATH: "/ready"}), CONTROLLER)
    assert resolution.spec.path is None
    [problem] = resolution.problems
    assert problem.reason is Reason.PATH_IGNORED_FOR_TCP_HEALTH_CHECK and problem.status is Status.WARN
    assert "/ready" in problem.message and ann.NLB_HC_PROTOCOL in problem.remedy


def test_nlb_http_uses_the_path() -> None:
    resolution = resolve_nlb(nlb(annotations={ann.NLB_HC_PATH: "/ready", ann.NLB_HC_PROTOCOL: "HTTP"}), CONTROLLER)
    assert resolution.spec.path == "/ready" and str(resolution.spec.success_codes) == "200-399"
    assert resolution.problems == ()


@pytest.mark.parametrize(
    ("key", "value", "reason", "fragment"),
    [
        (ann.NLB_HC_PROTOCOL, "udp", Reason.INVALID_ANNOTATION, "not one of TCP, HTTP, HTTPS"),
        (ann.NLB_HC_INTERVAL, "ten", Reason.INVALID_ANNOTATION, "not a whole number"),
        (ann.NLB_HC_INTERVAL, "1", Reason.INVALID_ANNOTATION, "outside 5-300"),
        (ann.NLB_HEALTHY_THRESHOLD, "11", Reason.INVALID_ANNOTATION, "outside 2-10"),
        (ann.NLB_HC_PORT, "metrics", Reason.HEALTH_CHECK_PORT_NOT_IN_SERVICE, "names no port"),
        (ann.NLB_HC_PORT, "70000", Reason.INVALID_ANNOTATION, "between 1 and 65535"),
        (ann.NLB_SUCCESS_CODES, "200-600", Reason.INVALID_SUCCESS_CODES, "outside the 200-599"),
        (ann.NLB_HC_PATH, "healthz", Reason.INVALID_ANNOTATION, "not a path"),
    ],
)
def test_nlb_bad_values_are_findings(key: str, value: str, reason: Reason, fragment: str) -> None:
    annotations = {key: value, ann.NLB_HC_PROTOCOL: "http"} if key != ann.NLB_HC_PROTOCOL else {key: value}
    resolution = resolve_nlb(nlb(annotations=annotations), CONTROLLER)
    found = [p for p in resolution.problems if p.reason is reason]
    assert found, resolution.problems
    assert fragment in found[0].message
    assert found[0].check is Check.SERVICE_ANNOTATIONS and found[0].status is Status.FAIL
    assert value in found[0].message  # the offending value is quoted back


def test_interval_shorter_than_timeout() -> None:
    resolution = resolve_nlb(nlb(annotations={ann.NLB_HC_INTERVAL: "5", ann.NLB_HC_TIMEOUT: "20"}), CONTROLLER)
    assert [p.reason for p in resolution.problems] == [Reason.INTERVAL_SHORTER_THAN_TIMEOUT]


def test_alb_instance_target_behind_cluster_ip_needs_a_node_port() -> None:
    resolution = resolve_alb(ingress(annotations={ann.ALB_TARGET_TYPE: "instance"}), service(), CONTROLLER)
    assert [p.reason for p in resolution.problems] == [Reason.INSTANCE_TARGET_NEEDS_NODE_PORT]


def test_alb_invalid_success_codes() -> None:
    resolution = resolve_alb(ingress(annotations={ann.ALB_SUCCESS_CODES: "200-600"}), service(), CONTROLLER)
    [problem] = resolution.problems
    assert problem.reason is Reason.INVALID_SUCCESS_CODES and problem.check is Check.INGRESS_ANNOTATIONS
    assert str(resolution.spec.success_codes) == "200"  # probing goes on with the default


def test_alb_named_health_port_whose_target_is_named() -> None:
    svc = service(ports=(ServicePort("http", 80, 8080), ServicePort("admin", 9000, "admin-port")))
    resolution = resolve_alb(ingress(annotations={ann.ALB_HC_PORT: "admin"}), svc, CONTROLLER)
    assert [p.reason for p in resolution.problems] == [Reason.INVALID_ANNOTATION]
    assert "itself the name" in resolution.problems[0].message


def test_nlb_annotation_on_alb_backend_and_misspelling_warn() -> None:
    resolution = resolve_alb(
        ingress(annotations={"alb.ingress.kubernetes.io/health-check-path": "/x"}),
        service(annotations={ann.NLB_HC_PATH: "/healthz"}),
        CONTROLLER,
    )
    messages = " ".join(p.message for p in resolution.problems)
    assert all(p.status is Status.WARN for p in resolution.problems)
    assert "only NLB target groups read" in messages
    assert "not an annotation the controller reads" in messages
