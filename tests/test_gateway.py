"""Gateway API through the AWS Load Balancer Controller: attachment, the TargetGroupConfiguration merges, the
health check the controller derives, and the findings for what it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import OwnerPlan, plan_all
from exporter.lb.targets import node_targets
from exporter.model.results import Check, ObjectRef, Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from tests import gateway_objects as g

CONTROLLER = ControllerConfig()


def plan_of(snap: ClusterSnapshot, kind: str = "HTTPRoute", name: str = "web") -> OwnerPlan:
    plans = {p.owner: p for p in plan_all(snap, CONTROLLER)}
    return plans[ObjectRef(kind, "shop", name)]


def reasons(plan: OwnerPlan) -> list[Reason]:
    found = [p.reason for p in plan.problems]
    for backend in plan.backends:
        if backend.resolution is not None:
            found += [p.reason for p in backend.resolution.problems]
    return found


def base(*extra: dict[str, Any], listeners: list[dict[str, Any]] | None = None) -> ClusterSnapshot:
    return g.snapshot(g.gateway_class(), g.gateway(listeners=listeners), g.svc(), *extra)


def test_http_route_defaults_differ_from_ingress() -> None:
    """No TargetGroupConfiguration: HTTP / 200-399 every 15 s, timeout 5, thresholds 3/3, the controller's
    default target type — the Gateway defaults, not the Ingress ones (200, 2/2)."""
    plan = plan_of(base(g.route()))
    [backend] = plan.backends
    assert backend.owner == ObjectRef("HTTPRoute", "shop", "web") and backend.lb == "alb"
    assert backend.gateway == ObjectRef("Gateway", "shop", "web")
    assert backend.resolution is not None
    spec = backend.resolution.spec
    assert (spec.protocol, spec.path, str(spec.success_codes), spec.port) == ("HTTP", "/", "200-399", "traffic-port")
    assert (spec.interval, spec.timeout, spec.healthy_threshold, spec.unhealthy_threshold) == (15, 5, 3, 3)
    assert spec.target_type == "instance" and spec.protocol_version == "HTTP1"
    assert reasons(plan) == []
    assert backend.resolution.deregistration_delay == 300


def test_service_tgc_replaces_the_default_health_check_block_whole() -> None:
    """The shallow merge users trip on: a Service TGC with healthCheckConfig drops every field of the default's."""
    default = g.tgc(
        "gateway-defaults",
        default={
            "targetType": "ip",
            "healthCheckConfig": {"healthCheckPath": "/healthz", "healthCheckInterval": 10},
            "targetGroupAttributes": [{"key": "deregistration_delay.timeout_seconds", "value": "30"}],
        },
    )
    service_tgc = g.tgc("web-tgc", service="web", default={"healthCheckConfig": {"healthCheckTimeout": 3}})
    snap = g.snapshot(
        g.gateway_class(),
        g.gateway(lbc="web-lbc"),
        g.svc(),
        g.route(),
        default,
        service_tgc,
        g.lbc("web-lbc", defaultTargetGroupConfiguration={"name": "gateway-defaults"}),
    )
    plan = plan_of(snap)
    [backend] = plan.backends
    assert backend.resolution is not None
    spec = backend.resolution.spec
    assert spec.target_type == "ip"  # inherited: another top-level field
    assert (spec.path, spec.interval, spec.timeout) == ("/", 15, 3)  # not /healthz, not 10: the block was replaced
    assert backend.resolution.deregistration_delay == 30  # attributes merge per key
    [warning] = [p for p in plan.problems if p.reason is Reason.HEALTH_CHECK_CONFIG_REPLACES_DEFAULT]
    assert warning.status is Status.WARN and warning.check is Check.GATEWAY_CONFIG
    assert "healthCheckPath, healthCheckInterval" in warning.message and "shop/web-tgc" in warning.message


@pytest.mark.parametrize(("mode", "path"), [(None, "/from-class"), ("prefer-gateway", "/from-gateway")])
def test_merging_mode_decides_between_class_and_gateway_defaults(mode: str | None, path: str) -> None:
    class_lbc = g.lbc(
        "class-lbc",
        namespace="infra",
        defaultTargetGroupConfiguration={"name": "class-tgc"},
        **({"mergingMode": mode} if mode else {}),
    )
    objects = [
        g.gateway_class(
            parametersRef={
                "group": "gateway.k8s.aws",
                "kind": "LoadBalancerConfiguration",
                "name": "class-lbc",
                "namespace": "infra",
            }
        ),
        class_lbc,
        g.tgc(
            "class-tgc",
            namespace="infra",
            default={"healthCheckConfig": {"healthCheckPath": "/from-class"}, "targetType": "ip"},
        ),
        g.gateway(lbc="gw-lbc"),
        g.lbc("gw-lbc", defaultTargetGroupConfiguration={"name": "gw-tgc"}),
        g.tgc("gw-tgc", default={"healthCheckConfig": {"healthCheckPath": "/from-gateway"}}),
        g.svc(),
        g.route(),
    ]
    [backend] = plan_of(g.snapshot(*objects)).backends
    assert backend.resolution is not None
    assert backend.resolution.spec.path == path
    assert backend.resolution.spec.target_type == "ip"  # set only on the class default: kept either way


def test_route_configuration_longest_match_wins() -> None:
    service_tgc = g.tgc(
        "web-tgc",
        service="web",
        default={"healthCheckConfig": {"healthCheckPath": "/default"}},
        routes=[
            {
                "routeIdentifier": {"kind": "HTTPRoute"},
                "targetGroupProps": {"healthCheckConfig": {"healthCheckPath": "/kind"}},
            },
            {
                "routeIdentifier": {"kind": "HTTPRoute", "namespace": "shop"},
                "targetGroupProps": {"healthCheckConfig": {"healthCheckPath": "/kind-ns"}},
            },
            {
                "routeIdentifier": {"kind": "HTTPRoute", "namespace": "shop", "name": "other"},
                "targetGroupProps": {"healthCheckConfig": {"healthCheckPath": "/other"}},
            },
        ],
    )
    [backend] = plan_of(base(g.route(), service_tgc)).backends
    assert backend.resolution is not None and backend.resolution.spec.path == "/kind-ns"


def test_grpc_route_on_https_listener_gets_a_grpc_health_check() -> None:
    https = [{"name": "https", "port": 443, "protocol": "HTTPS"}]
    plan = plan_of(base(g.route("GRPCRoute"), listeners=https), "GRPCRoute")
    [backend] = plan.backends
    assert backend.resolution is not None
    spec = backend.resolution.spec
    assert (spec.protocol_version, spec.path, str(spec.success_codes)) == ("GRPC", "/AWS.ALB/healthcheck", "12")
    targets = node_targets(plan_as_lb(plan), g.snapshot(g.svc(), g.pod(), g.node()), "node-a").targets
    [target] = [t for t in targets if t.pod]  # (instance targets: also the node path)
    assert target.request.kind == "GRPC" and target.request.success_ranges == ((12, 12),)
    assert target.request.path == "/AWS.ALB/healthcheck" and target.owner.kind == "GRPCRoute"


def plan_as_lb(plan: OwnerPlan) -> Any:
    from exporter.lb.plan import combine

    return combine([plan])


def test_grpc_route_on_http_listener_is_not_attached() -> None:
    plan = plan_of(base(g.route("GRPCRoute")), "GRPCRoute")
    assert plan.backends == ()
    [problem] = plan.problems
    assert problem.reason is Reason.ROUTE_NOT_ATTACHED
    assert "http (HTTP:80, kinds HTTPRoute" in problem.message


def test_route_from_another_namespace_needs_allowed_routes() -> None:
    snap = g.snapshot(g.gateway_class(), g.gateway(namespace="infra"), g.svc(), g.route(gateway_namespace="infra"))
    plan = plan_of(snap)
    assert [p.reason for p in plan.problems] == [Reason.ROUTE_NOT_ATTACHED]
    allowed = [{"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]
    snap = g.snapshot(
        g.gateway_class(), g.gateway(namespace="infra", listeners=allowed), g.svc(), g.route(gateway_namespace="infra")
    )
    assert len(plan_of(snap).backends) == 1


def test_nlb_routes_tcp_udp_and_local_instance_targets() -> None:
    nlb = [{"name": "tcp", "port": 5432, "protocol": "TCP"}, {"name": "udp", "port": 53, "protocol": "UDP"}]
    snap = g.snapshot(
        g.gateway_class("aws-nlb", "gateway.k8s.aws/nlb"),
        g.gateway(class_name="aws-nlb", listeners=nlb),
        g.svc(),
        g.svc("local", type_="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=32100),
        g.route("TCPRoute", backends=[{"name": "web", "port": 80}]),
        g.route("UDPRoute", "dns", backends=[{"name": "web", "port": 80}]),
        g.route("TCPRoute", "local", backends=[{"name": "local", "port": 80}]),
    )
    [tcp] = plan_of(snap, "TCPRoute").backends
    assert tcp.lb == "nlb" and tcp.resolution is not None
    assert (tcp.resolution.spec.protocol, tcp.resolution.spec.path, tcp.resolution.spec.success_codes) == (
        "TCP",
        None,
        None,
    )
    udp = plan_of(snap, "UDPRoute", "dns")
    assert Reason.UDP_HEALTH_CHECK_IS_TCP in reasons(udp)
    [local] = plan_of(snap, "TCPRoute", "local").backends
    assert local.resolution is not None
    spec = local.resolution.spec
    assert (spec.protocol, spec.path, spec.port, spec.interval, spec.timeout, spec.healthy_threshold) == (
        "HTTP",
        "/healthz",
        32100,
        10,
        6,
        2,
    )
    assert spec.node_health_check


def test_unknown_service_or_port() -> None:
    snap = base(g.route(backends=[{"name": "gone", "port": 80}, {"name": "web", "port": 8080}, {"name": "web"}]))
    plan = plan_of(snap)
    assert plan.backends == ()
    messages = [p.message for p in plan.problems]
    assert [p.reason for p in plan.problems] == [
        Reason.BACKEND_NOT_FOUND,
        Reason.BACKEND_NOT_FOUND,
        Reason.INVALID_CONFIGURATION,
    ]
    assert "Service shop/gone, which does not exist" in messages[0]
    assert "port 8080 of Service shop/web, which has no such port (ports: 80)" in messages[1]
    assert "Port is required" in messages[2]


def test_conflicting_service_tgcs_first_by_name_wins() -> None:
    snap = base(
        g.route(),
        g.tgc("b-tgc", service="web", default={"healthCheckConfig": {"healthCheckPath": "/b"}}),
        g.tgc("a-tgc", service="web", default={"healthCheckConfig": {"healthCheckPath": "/a"}}),
    )
    plan = plan_of(snap)
    assert plan.backends[0].resolution is not None and plan.backends[0].resolution.spec.path == "/a"
    [conflict] = [p for p in plan.problems if p.reason is Reason.CONFLICTING_TARGET_GROUP_CONFIGURATIONS]
    assert "uses the first it lists, a-tgc" in conflict.message


def test_default_configuration_problems() -> None:
    with_ref = g.snapshot(
        g.gateway_class(),
        g.gateway(lbc="web-lbc"),
        g.svc(),
        g.route(),
        g.lbc("web-lbc", defaultTargetGroupConfiguration={"name": "web-tgc"}),
        g.tgc("web-tgc", service="web"),
    )
    assert Reason.INVALID_CONFIGURATION in reasons(plan_of(with_ref))
    missing_tgc = g.snapshot(
        g.gateway_class(),
        g.gateway(lbc="web-lbc"),
        g.svc(),
        g.route(),
        g.lbc("web-lbc", defaultTargetGroupConfiguration={"name": "nope"}),
    )
    assert Reason.TARGET_GROUP_CONFIGURATION_NOT_FOUND in reasons(plan_of(missing_tgc))
    missing_lbc = g.snapshot(g.gateway_class(), g.gateway(lbc="nope"), g.svc(), g.route())
    assert Reason.LOAD_BALANCER_CONFIGURATION_NOT_FOUND in reasons(plan_of(missing_lbc))


def test_invalid_values_name_the_rule_that_rejects_them() -> None:
    bad = g.tgc(
        "web-tgc",
        service="web",
        default={
            "healthCheckConfig": {
                "healthCheckInterval": 400,
                "healthCheckTimeout": 6,
                "matcher": {"httpCode": "200-600"},
                "healthCheckProtocol": "TCP",
            },
            "targetGroupAttributes": [{"key": "deregistration_delay.timeout_seconds", "value": "7200"}],
        },
    )
    plan = plan_of(base(g.route(), bad))
    found = [(p.reason, p.message) for b in plan.backends if b.resolution for p in b.resolution.problems]
    assert found == [
        (
            Reason.INVALID_CONFIGURATION,
            "healthCheckConfig.healthCheckProtocol='TCP' on TargetGroupConfiguration "
            "shop/web-tgc is TCP, which an ALB target group does not allow: AWS rejects the target group",
        ),
        (
            Reason.INVALID_SUCCESS_CODES,
            "healthCheckConfig.matcher.httpCode='200-600' on TargetGroupConfiguration "
            "shop/web-tgc has '200-600', outside the 200-499 this load balancer accepts",
        ),
        (
            Reason.INVALID_CONFIGURATION,
            "healthCheckConfig.healthCheckInterval='400' on TargetGroupConfiguration "
            "shop/web-tgc is outside 5-300, the range AWS accepts",
        ),
        (
            Reason.INVALID_TARGET_GROUP_ATTRIBUTES,
            "targetGroupAttributes deregistration_delay.timeout_seconds='7200' "
            "from TargetGroupConfiguration shop/web-tgc is outside the 0-3600 seconds AWS accepts",
        ),
    ]
    spec = plan.backends[0].resolution.spec if plan.backends[0].resolution else None
    assert spec is not None and (spec.protocol, spec.interval) == ("HTTP", 15)  # probed with the defaults meanwhile
    short = g.tgc(
        "web-tgc", service="web", default={"healthCheckConfig": {"healthCheckInterval": 5, "healthCheckTimeout": 10}}
    )
    assert Reason.INTERVAL_SHORTER_THAN_TIMEOUT in reasons(plan_of(base(g.route(), short)))


def test_other_implementations_gateways_are_not_ours() -> None:
    snap = g.snapshot(
        g.gateway_class("istio", "istio.io/gateway-controller"), g.gateway(class_name="istio"), g.svc(), g.route()
    )
    assert [p for p in plan_all(snap, CONTROLLER) if p.owner.kind == "HTTPRoute"] == []


def test_ipv6_service_needs_a_dualstack_load_balancer_and_is_probed_over_ipv6() -> None:
    six = g.svc(ipFamilies=["IPv6"], ipFamilyPolicy="SingleStack")
    plan = plan_of(g.snapshot(g.gateway_class(), g.gateway(), six, g.route()))
    assert Reason.IPV6_REQUIRES_DUALSTACK in reasons(plan)
    objects = [
        g.gateway_class(),
        g.gateway(lbc="dual"),
        g.lbc("dual", ipAddressType="dualstack"),
        six,
        g.route(),
        g.tgc("ip", service="web", default={"targetType": "ip"}),
    ]
    plan = plan_of(g.snapshot(*objects))
    assert reasons(plan) == []
    assert plan.backends[0].resolution is not None and plan.backends[0].resolution.spec.ip_address_type == "ipv6"
    snap = g.snapshot(*objects, g.pod(ips=("10.0.0.5", "fd00::5")), g.node())
    [target] = node_targets(plan_as_lb(plan), snap, "node-a").targets
    assert target.request.ip == "fd00::5"


def test_controller_status_on_the_route_is_reported() -> None:
    route = g.route()
    route["status"] = {
        "parents": [
            {
                "controllerName": "gateway.k8s.aws/alb",
                "parentRef": {"name": "web"},
                "conditions": [
                    {
                        "type": "ResolvedRefs",
                        "status": "False",
                        "reason": "RefNotPermitted",
                        "message": "no ReferenceGrant",
                    }
                ],
            }
        ]
    }
    plan = plan_of(base(route))
    [problem] = [p for p in plan.problems if p.reason is Reason.ROUTE_NOT_ACCEPTED]
    assert "ResolvedRefs=False (RefNotPermitted)" in problem.message and "no ReferenceGrant" in problem.message


def test_bindings_the_controller_made_for_gateways_are_not_probed_twice() -> None:
    """The controller creates a TargetGroupBinding per Gateway target group, labelled with its Gateway stack; it is
    not a hand-made target group to probe over TCP."""
    from exporter.lb.plan import plan_binding
    from exporter.model.objects import ObjectMeta, TargetGroupBinding

    labels = {"gateway.k8s.aws.alb/stack-namespace": "shop", "gateway.k8s.aws.alb/stack-name": "web"}
    made = TargetGroupBinding(ObjectMeta("shop", "k8s-shop-web-0a1b2c3d4e", labels=labels), "arn:…", "ip", "web", 80)
    assert plan_binding(made, base()) is None
    own = TargetGroupBinding(ObjectMeta("shop", "mine"), "arn:…", "ip", "web", 80)
    assert plan_binding(own, base()) is not None


def test_a_probe_failing_on_what_the_merge_left_names_the_merge() -> None:
    from exporter.checks.causes import link
    from exporter.checks.lb_annotations import owner_results
    from exporter.lb.healthcheck import Problem
    from exporter.model import subjects
    from exporter.model.results import CheckResult, TargetRef

    route = ObjectRef("HTTPRoute", "shop", "web")
    lost = Problem(Check.GATEWAY_CONFIG, Reason.HEALTH_CHECK_CONFIG_REPLACES_DEFAULT, Status.WARN, "lost", "merge")
    [merge] = owner_results(Check.GATEWAY_CONFIG, route, [lost])
    # What a route's probe result is about (exporter.checks.health_probe.about): its pod, and the route's model.
    about = (subjects.pod("shop", "web-1"), subjects.model(route))
    probe = CheckResult(
        Check.HEALTH_PROBE,
        Status.WARN,
        Reason.RESPONSE_CODE_MISMATCH,
        route,
        "404",
        target=TargetRef("web-1", "10.0.0.5", 8080),
        about=about,
    )
    refused = CheckResult(
        Check.HEALTH_PROBE,
        Status.WARN,
        Reason.CONNECTION_REFUSED,
        route,
        "refused",
        target=TargetRef("web-2", "10.0.0.6", 8080),
        about=about,
    )
    linked = {r.target.pod if r.target else None: r for r in link([merge, probe, refused])}
    assert linked["web-1"].caused_by == merge.key
    assert linked["web-2"].caused_by is None  # a refused connection is not the health check's settings
