"""EKS Auto Mode (IngressClass eks.amazonaws.com/alb, loadBalancerClass eks.amazonaws.com/nlb) and IPv6 /
dual-stack target groups for Ingresses and Services: derivation, findings, and the controller step."""

from __future__ import annotations

from typing import Any

from exporter.checks import cluster
from exporter.checks.controller import ControllerLocation
from exporter.lb import annotations as ann
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import OwnerPlan, combine, plan_all
from exporter.lb.targets import node_targets
from exporter.model.results import ObjectRef, Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from tests import gateway_objects as g

CONTROLLER = ControllerConfig()
WHERE = ControllerLocation()


def ingress(
    name: str = "web", class_name: str = "auto-alb", annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations or {}},
        "spec": {
            "ingressClassName": class_name,
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "web", "port": {"number": 80}}},
                            }
                        ]
                    }
                }
            ],
        },
    }


def ingress_class(
    name: str = "auto-alb",
    controller_name: str = ann.AUTO_MODE_ALB_CONTROLLER,
    params: str | None = "auto-params",
    group: str = "eks.amazonaws.com",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"controller": controller_name}
    if params is not None:
        spec["parameters"] = {"apiGroup": group, "kind": "IngressClassParams", "name": params}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": name}, "spec": spec}


def params(name: str = "auto-params", group: str = "eks.amazonaws.com", **spec: Any) -> dict[str, Any]:
    version = "v1" if group == "eks.amazonaws.com" else "v1beta1"
    return {"apiVersion": f"{group}/{version}", "kind": "IngressClassParams", "metadata": {"name": name}, "spec": spec}


def plans(snap: ClusterSnapshot) -> dict[ObjectRef, OwnerPlan]:
    return {p.owner: p for p in plan_all(snap, CONTROLLER)}


def test_auto_mode_ingress_defaults_to_ip_targets() -> None:
    """The controller's default is instance; EKS Auto Mode's is ip, with the same annotations otherwise."""
    snap = g.snapshot(ingress_class(), params(), g.svc(), ingress(annotations={ann.ALB_HC_PATH: "/healthz"}))
    plan = plans(snap)[ObjectRef("Ingress", "shop", "web")]
    [backend] = plan.backends
    assert backend.manager == "eks-auto-mode" and plan.manager == "eks-auto-mode"
    assert backend.resolution is not None
    assert backend.resolution.spec.target_type == "ip" and backend.resolution.spec.path == "/healthz"
    lbc = g.snapshot(ingress_class("alb", "ingress.k8s.aws/alb", None), g.svc(), ingress(class_name="alb"))
    [own] = plans(lbc)[ObjectRef("Ingress", "shop", "web")].backends
    assert own.manager == "lbc" and own.resolution is not None and own.resolution.spec.target_type == "instance"


def test_auto_mode_ignores_some_annotations() -> None:
    snap = g.snapshot(
        ingress_class(),
        params(),
        g.svc(),
        ingress(annotations={ann.ALB_GROUP_NAME: "shop", ann.ALB_HC_PATH: "/healthz"}),
    )
    [backend] = plans(snap)[ObjectRef("Ingress", "shop", "web")].backends
    assert backend.resolution is not None
    [problem] = backend.resolution.problems
    assert problem.reason is Reason.NOT_SUPPORTED_BY_AUTO_MODE and problem.status is Status.WARN
    assert ann.ALB_GROUP_NAME in problem.message and "IngressClassParams" in problem.remedy


def test_auto_mode_nlb_service() -> None:
    service = g.svc("db", type_="LoadBalancer", loadBalancerClass="eks.amazonaws.com/nlb")
    service["metadata"]["annotations"] = {ann.NLB_TYPE: "external"}
    plan = plans(g.snapshot(service))[ObjectRef("Service", "shop", "db")]
    [backend] = plan.backends
    assert backend.manager == "eks-auto-mode" and backend.resolution is not None
    assert backend.resolution.spec.target_type == "ip" and backend.resolution.spec.protocol == "TCP"
    assert [p.reason for p in backend.resolution.problems] == [Reason.NOT_SUPPORTED_BY_AUTO_MODE]


def test_lbc_ingress_class_params_override_the_target_type() -> None:
    snap = g.snapshot(
        ingress_class("alb", "ingress.k8s.aws/alb", "alb-params", "elbv2.k8s.aws"),
        params("alb-params", "elbv2.k8s.aws", targetType="ip"),
        g.svc(),
        ingress(class_name="alb"),
    )
    [backend] = plans(snap)[ObjectRef("Ingress", "shop", "web")].backends
    assert backend.resolution is not None and backend.resolution.spec.target_type == "ip"


def test_controller_step_asks_auto_mode_through_its_api() -> None:
    """No Deployment to look at: Auto Mode is there when its API is served and the IngressClassParams exist."""
    objects = [ingress_class(), g.svc(), ingress()]
    enabled = g.snapshot(*objects, params())
    results = cluster.controller_unit(enabled, WHERE, plan_all(enabled, CONTROLLER))
    [auto] = [r for r in results if r.object == ObjectRef("IngressClass", "", "auto-alb")]
    assert auto.status is Status.OK and "EKS Auto Mode reconciles IngressClass auto-alb" in auto.message
    # The self-managed controller is not needed for Auto Mode's objects: no ControllerNotFound failure.
    [deployment] = [r for r in results if r.object.kind == "Deployment"]
    assert deployment.status is Status.WARN and deployment.reason is Reason.CONTROLLER_NOT_FOUND

    missing_params = g.snapshot(*objects)
    results = cluster.controller_unit(missing_params, WHERE, plan_all(missing_params, CONTROLLER))
    [auto] = [r for r in results if r.object.kind == "IngressClass"]
    assert (auto.status, auto.reason) == (Status.FAIL, Reason.INGRESS_CLASS_PARAMS_NOT_FOUND)

    not_enabled = g.snapshot(*objects, absent=["ingressclassparams.eks.amazonaws.com"])
    results = cluster.controller_unit(not_enabled, WHERE, plan_all(not_enabled, CONTROLLER))
    [auto] = [r for r in results if r.object.kind == "IngressClass"]
    assert (auto.status, auto.reason) == (Status.FAIL, Reason.AUTO_MODE_NOT_ENABLED)
    assert "Auto Mode is not enabled on this cluster" in auto.message

    hidden = g.snapshot(*objects, forbidden=["ingressclassparams.eks.amazonaws.com"])
    results = cluster.controller_unit(hidden, WHERE, plan_all(hidden, CONTROLLER))
    [auto] = [r for r in results if r.object.kind == "IngressClass"]
    assert (auto.status, auto.reason) == (Status.UNKNOWN, Reason.FORBIDDEN)

    nlb = g.svc("db", type_="LoadBalancer", loadBalancerClass="eks.amazonaws.com/nlb")
    without = g.snapshot(nlb, absent=["ingressclassparams.eks.amazonaws.com"])
    results = cluster.controller_unit(without, WHERE, plan_all(without, CONTROLLER))
    [auto] = [r for r in results if r.object.kind == "LoadBalancerClass"]
    assert auto.reason is Reason.AUTO_MODE_NOT_ENABLED and "1 Service(s)" in auto.message


def test_ipv6_service_behind_an_ipv4_alb_is_refused() -> None:
    dual = g.svc(ipFamilies=["IPv4", "IPv6"], ipFamilyPolicy="RequireDualStack")
    lbc_class = ingress_class("alb", "ingress.k8s.aws/alb", None)
    snap = g.snapshot(lbc_class, dual, ingress(class_name="alb", annotations={ann.ALB_TARGET_TYPE: "ip"}))
    [backend] = plans(snap)[ObjectRef("Ingress", "shop", "web")].backends
    assert backend.resolution is not None
    [problem] = backend.resolution.problems
    assert problem.reason is Reason.IPV6_REQUIRES_DUALSTACK and problem.status is Status.FAIL
    assert "IPv4, IPv6" in problem.message  # a dual-stack Service gets an IPv6 target group, IPv4 first or not
    ok = g.snapshot(
        lbc_class,
        dual,
        g.pod(ips=("10.0.0.5", "fd00:10::5")),
        g.node(),
        ingress(class_name="alb", annotations={ann.ALB_TARGET_TYPE: "ip", ann.ALB_IP_ADDRESS_TYPE: "dualstack"}),
    )
    plan = plan_all(ok, CONTROLLER)
    [backend] = [b for p in plan for b in p.backends]
    assert backend.resolution is not None and backend.resolution.problems == ()
    assert backend.resolution.spec.ip_address_type == "ipv6"
    [target] = node_targets(combine(plan), ok, "node-a").targets
    assert target.request.ip == "fd00:10::5"  # the pod is checked at its IPv6 address


def test_ipv6_instance_targets_need_nodes_with_ipv6_addresses() -> None:
    service = g.svc("db", type_="LoadBalancer", ipFamilies=["IPv6"])
    service["metadata"]["annotations"] = {
        ann.NLB_TYPE: "external",
        ann.NLB_TARGET_TYPE: "instance",
        ann.NLB_IP_ADDRESS_TYPE: "dualstack",
    }
    snap = g.snapshot(service, g.node("v4-only", ("10.0.1.1",)), g.node("dual", ("10.0.1.2", "fd00::2")))
    plan = plans(snap)[ObjectRef("Service", "shop", "db")]
    [problem] = plan.problems
    assert problem.reason is Reason.NODE_WITHOUT_IPV6_ADDRESS and "v4-only" in problem.message
    assert "dual" not in problem.message.split("node(s)")[1].split("have")[0]
    targets = node_targets(combine([plan]), snap, "dual").targets
    assert [t.request.ip for t in targets] == ["fd00::2"]  # the node path, over IPv6


def test_invalid_ip_address_type_and_target_group_attributes() -> None:
    service = g.svc("db", type_="LoadBalancer")
    service["metadata"]["annotations"] = {
        ann.NLB_TYPE: "external",
        ann.NLB_TARGET_TYPE: "ip",
        ann.NLB_IP_ADDRESS_TYPE: "ipv6",
        ann.NLB_TARGET_GROUP_ATTRIBUTES: "deregistration_delay.timeout_seconds=30,preserve_client_ip.enabled=true",
    }
    [backend] = plans(g.snapshot(service))[ObjectRef("Service", "shop", "db")].backends
    assert backend.resolution is not None
    assert [p.reason for p in backend.resolution.problems] == [Reason.INVALID_ANNOTATION]
    assert backend.resolution.deregistration_delay == 30
    service["metadata"]["annotations"][ann.NLB_TARGET_GROUP_ATTRIBUTES] = "deregistration_delay.timeout_seconds"
    service["metadata"]["annotations"][ann.NLB_IP_ADDRESS_TYPE] = "ipv4"
    [backend] = plans(g.snapshot(service))[ObjectRef("Service", "shop", "db")].backends
    assert backend.resolution is not None
    assert [p.reason for p in backend.resolution.problems] == [Reason.INVALID_TARGET_GROUP_ATTRIBUTES]
    assert backend.resolution.deregistration_delay == 300
