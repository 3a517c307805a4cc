"""Which pods on this node are load-balanced, and the probe each gets."""

from __future__ import annotations

from exporter.lb import annotations as ann
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import build_plan, is_nlb_service
from exporter.lb.targets import node_targets
from exporter.model.objects import (
    ContainerPort,
    Endpoint,
    EndpointSlice,
    ObjectMeta,
    ServicePort,
    TargetGroupBinding,
)
from exporter.model.results import Check, Reason
from exporter.model.snapshot import ClusterSnapshot
from tests.builders import ALB_CLASS, NODE, ingress, nlb, pod, service

CONTROLLER = ControllerConfig()


def targets_of(snapshot: ClusterSnapshot, node: str = NODE):  # type: ignore[no-untyped-def]
    return node_targets(build_plan(snapshot, CONTROLLER), snapshot, node)


def test_nlb_scope_follows_the_controller() -> None:
    assert is_nlb_service(nlb(), CONTROLLER)
    assert not is_nlb_service(service(type="LoadBalancer"), CONTROLLER)  # in-tree provider, not the controller
    assert is_nlb_service(service(type="LoadBalancer", load_balancer_class="service.k8s.aws/nlb"), CONTROLLER)
    nlb_ip = service(type="LoadBalancer", annotations={ann.NLB_TYPE: "nlb-ip"})
    assert is_nlb_service(nlb_ip, CONTROLLER)


def test_only_pods_on_this_node_are_probed() -> None:
    snapshot = ClusterSnapshot.of(
        services=[nlb()],
        pods=[pod("web-1", ip="10.0.0.1"), pod("web-2", ip="10.0.0.2", node="node-b")],
    )
    found = targets_of(snapshot)
    assert [t.pod for t in found.targets] == ["web-1"]
    target = found.targets[0]
    assert (target.request.ip, target.request.port, target.request.protocol) == ("10.0.0.1", 8080, "TCP")
    assert target.labels == ("shop", "web", "web-1", NODE, "nlb", "8080", "", "service/web")


def test_alb_ingress_backend_gets_the_ingress_health_check() -> None:
    snapshot = ClusterSnapshot.of(
        services=[service()],
        ingresses=[ingress(annotations={ann.ALB_HC_PATH: "/healthz", ann.ALB_SUCCESS_CODES: "200-204"})],
        ingress_classes=[ALB_CLASS],
        pods=[pod()],
    )
    [target] = targets_of(snapshot).targets
    assert target.lb == "alb" and target.owner.kind == "Ingress"
    assert (target.request.path, target.request.success_ranges, target.request.timeout) == (
        "/healthz",
        ((200, 204),),
        5,
    )
    assert target.thresholds.initial_healthy_after == 1  # ALB: one passing check makes a new target healthy


def test_ingress_of_another_class_is_ignored() -> None:
    other = ingress()
    other = type(other)(other.meta, "nginx", other.backends)
    snapshot = ClusterSnapshot.of(services=[service()], ingresses=[other], ingress_classes=[ALB_CLASS], pods=[pod()])
    assert targets_of(snapshot).targets == ()


def test_named_target_port_resolves_on_the_pod() -> None:
    svc = nlb(ports=(ServicePort("http", 80, "web-port"),))
    snapshot = ClusterSnapshot.of(services=[svc], pods=[pod(ports=(ContainerPort("web-port", 9000),))])
    [target] = targets_of(snapshot).targets
    assert target.request.port == 9000


def test_named_health_check_port() -> None:
    svc = nlb(
        annotations={ann.NLB_HC_PORT: "admin", ann.NLB_HC_PROTOCOL: "http"},
        ports=(ServicePort("http", 80, 8080), ServicePort("admin", 9901, 9901)),
    )
    snapshot = ClusterSnapshot.of(services=[svc], pods=[pod()])
    ports = {t.request.port for t in targets_of(snapshot).targets}
    assert ports == {9901}  # both target groups check the admin port, so one probe


def test_pods_without_ip_or_with_missing_named_port_are_not_probed() -> None:
    svc = nlb(ports=(ServicePort("http", 80, "nope"),))
    snapshot = ClusterSnapshot.of(services=[svc], pods=[pod("web-1"), pod("web-2", ip=None, phase="Pending")])
    found = targets_of(snapshot)
    assert found.targets == ()
    assert {p.pod.meta.name for p in found.placements} == {"web-1", "web-2"}  # still known for the checks


def test_selectorless_service_uses_its_endpoint_slices() -> None:
    svc = nlb(selector={})
    eps = EndpointSlice(
        ObjectMeta("shop", "web-abc", labels={"kubernetes.io/service-name": "web"}),
        "web",
        "IPv4",
        (Endpoint(("10.0.0.1",), ready=True, node_name=NODE, pod_name="manual-1"),),
    )
    snapshot = ClusterSnapshot.of(services=[svc], endpoint_slices=[eps], pods=[pod("manual-1", app="other")])
    assert [t.pod for t in targets_of(snapshot).targets] == ["manual-1"]


def test_unmanaged_target_group_binding_is_probed_over_tcp() -> None:
    binding = TargetGroupBinding(
        ObjectMeta("shop", "external-tg"), "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/x/1", "ip", "web", 80
    )
    snapshot = ClusterSnapshot.of(services=[service()], target_group_bindings=[binding], pods=[pod()])
    [target] = targets_of(snapshot).targets
    assert target.lb == "tgb" and target.request.protocol == "TCP" and target.request.port == 8080


def test_missing_backend_service_is_an_ingress_finding() -> None:
    snapshot = ClusterSnapshot.of(ingresses=[ingress(service_name="gone")], ingress_classes=[ALB_CLASS])
    plan = build_plan(snapshot, CONTROLLER)
    problems = [p for _, p in plan.problems]
    assert [p.reason for p in problems] == [Reason.BACKEND_NOT_FOUND]
    assert problems[0].check is Check.INGRESS_ANNOTATIONS and "'gone'" in problems[0].message
