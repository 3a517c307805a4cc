"""The demo cluster: Kubernetes objects for a small EKS-like shop, and the apps behind its pods.

Each scenario is one load-balanced service with the runbook case it demonstrates and the check and
reason lbdoctor must report for it. Tests assert exactly these expectations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from exporter.demo.apps import App, Behaviour
from exporter.fakeapi.state import ClusterState

NAMESPACE = "shop"
NODE = "ip-10-0-1-23.ec2.internal"
NODE_IP = "127.0.0.1"
APP_PORT = 8080
DEFAULT_NET = "127.0"

ALB = "alb.ingress.kubernetes.io/"
NLB = "service.beta.kubernetes.io/aws-load-balancer-"


@dataclass(frozen=True)
class PodSpec:
    name: str
    host: str  # the last two octets of its IP; the first two are the demo's network, e.g. 127.213
    behaviour: Behaviour | None  # None: nothing listens on the app port
    listen_port: int = APP_PORT
    crash_looping: bool = False


@dataclass(frozen=True)
class Scenario:
    """One load-balanced service and what each role must report for it.

    ``expect_check``/``expect_reason``: the node role's finding (reason None: healthy; check None: the
    node role has nothing to say, e.g. no pod of it is selected). ``cluster_check``/``cluster_reason``:
    what the cluster role and ``lbdoctor diagnose`` report (None: no object check fails).
    """

    name: str
    lb: str  # alb | nlb
    case: str  # the runbook case, in words
    expect_check: str | None
    expect_reason: str | None
    pods: tuple[PodSpec, ...]
    annotations: dict[str, str] = field(default_factory=dict)  # on the Ingress (ALB) or Service (NLB)
    expect_flapping: bool = False
    cluster_check: str | None = None
    cluster_reason: str | None = None
    selector: dict[str, str] | None = None  # None: app.kubernetes.io/name=<name>, as the pods carry
    container_port: int = APP_PORT  # what the pods declare
    target_port: int = APP_PORT
    service_type: str | None = None  # None: ClusterIP for ALB (ip targets), LoadBalancer for NLB
    traffic_policy: str = "Cluster"
    # How traffic reaches the pods: "ingress" (ALB) / "service" (NLB) through the AWS Load Balancer Controller,
    # "gateway" (an HTTPRoute on the controller's ALB Gateway, with a TargetGroupConfiguration of the Service),
    # "auto-mode" (an Ingress of EKS Auto Mode's IngressClass).
    front: str = ""
    tgc: dict[str, Any] | None = None  # gateway: the Service's TargetGroupConfiguration defaultConfiguration
    pre_stop: bool = True  # the pods sleep in preStop before SIGTERM
    grace: int = 45  # terminationGracePeriodSeconds

    @property
    def kind(self) -> str:
        """The owner kind lbdoctor reports the load balancer's results on."""
        if self.front == "gateway":
            return "HTTPRoute"
        return "Ingress" if self.lb == "alb" else "Service"

    # With the demo's AWS (the demo extra): the fault seeded on the load balancer's network path, if any,
    # and what the cluster role reports from AWS (check, reason).
    aws_fault: str | None = None  # "security_group" | "nacl"
    aws: tuple[tuple[str, str], ...] = ()
    aws_case: str = ""  # the AWS side's case, in words, for the banner
    readiness_gate: bool = False  # its pods carry the controller's target-health readiness gate
    # With the demo's AWS: a pod of the last rollout, gone, whose target still drains (the host part of its IP)
    departed: str | None = None


# Every demo load balancer drains its targets for 30 s and every pod outlives that (preStop sleep 10 s, grace
# 45 s), as the rollout check asks, except the one scenario that shows the window.
_DRAIN = "deregistration_delay.timeout_seconds=30"
_FAST_ALB = {
    ALB + "target-type": "ip",
    ALB + "healthcheck-interval-seconds": "5",
    ALB + "healthcheck-timeout-seconds": "2",
    ALB + "target-group-attributes": _DRAIN,
}
_FAST_NLB = {
    NLB + "type": "external",
    NLB + "nlb-target-type": "ip",
    NLB + "healthcheck-interval": "5",
    NLB + "healthcheck-timeout": "2",
    NLB + "healthcheck-healthy-threshold": "2",
    NLB + "healthcheck-unhealthy-threshold": "2",
    NLB + "target-group-attributes": _DRAIN,
}
_HTTP_NLB = {**_FAST_NLB, NLB + "healthcheck-protocol": "http"}


def _ip(service: int, pod: int) -> str:
    """The host part of a pod's address; the demo picks the 127.N network at start (several may run)."""
    return f"{10 + service}.{pod + 1}"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "storefront",
        "alb",
        "healthy ALB service",
        "health_probe",
        None,
        (
            PodSpec("storefront-7d9f8-abcde", _ip(0, 0), Behaviour()),
            PodSpec("storefront-7d9f8-fghij", _ip(0, 1), Behaviour()),
        ),
        {**_FAST_ALB, ALB + "healthcheck-path": "/healthz"},
    ),
    Scenario(
        "payments",
        "nlb",
        "healthy NLB service (HTTP health check)",
        "health_probe",
        None,
        (
            PodSpec("payments-5c6b7-klmno", _ip(1, 0), Behaviour()),
            PodSpec("payments-5c6b7-pqrst", _ip(1, 1), Behaviour()),
        ),
        {**_HTTP_NLB, NLB + "healthcheck-path": "/health"},
    ),
    Scenario(
        "catalog",
        "alb",
        "the default health path / answers 404 (the app only serves /healthz)",
        "health_probe",
        "ResponseCodeMismatch",
        (PodSpec("catalog-6f5d4-uvwxy", _ip(2, 0), Behaviour(paths=frozenset({"/healthz"}))),),
        dict(_FAST_ALB),
        aws=(("elb_target_health", "Target.ResponseCodeMismatch"),),
        aws_case="the ALB gets 404 too: the application's side",
    ),
    Scenario(
        "orders",
        "nlb",
        "the app listens on 9090, not on the target port 8080",
        "health_probe",
        "ConnectionRefused",
        (PodSpec("orders-8a7b6-zabcd", _ip(3, 0), Behaviour(), listen_port=9090),),
        dict(_FAST_NLB),
        aws=(("elb_target_health", "Target.FailedHealthChecks"),),
        aws_case="the NLB cannot connect either: the application's side",
    ),
    Scenario(
        "search",
        "alb",
        "the app answers in 4 s, the health check times out after 2 s",
        "health_probe",
        "Timeout",
        (PodSpec("search-9b8c7-efghi", _ip(4, 0), Behaviour(delay=4.0)),),
        {**_FAST_ALB, ALB + "healthcheck-path": "/healthz"},
        aws=(("elb_target_health", "Target.Timeout"),),
        aws_case="the ALB times out too: the application's side",
    ),
    Scenario(
        "recommendations",
        "nlb",
        "a target that flaps between healthy and failing",
        "health_probe",
        "Flapping",
        (PodSpec("recommendations-4d3e2-jklmn", _ip(5, 0), Behaviour(flap_period=25.0)),),
        {**_HTTP_NLB, NLB + "healthcheck-path": "/healthz"},
        expect_flapping=True,
    ),
    Scenario(
        "checkout",
        "alb",
        "one pod is crash-looping, so nothing answers its health check",
        "pod_status",
        "CrashLoopBackOff",
        (
            PodSpec("checkout-2e1f0-opqrs", _ip(6, 0), Behaviour()),
            PodSpec("checkout-2e1f0-tuvwx", _ip(6, 1), None, crash_looping=True),
        ),
        {**_FAST_ALB, ALB + "healthcheck-path": "/healthz"},
        cluster_check="pod_status",
        cluster_reason="CrashLoopBackOff",
    ),
    Scenario(
        "inventory",
        "nlb",
        "an NLB sets a health-check path, but its protocol is TCP, so the path is ignored",
        "service_annotations",
        "PathIgnoredForTcpHealthCheck",
        (PodSpec("inventory-1a2b3-yzabc", _ip(7, 0), Behaviour()),),
        {**_FAST_NLB, NLB + "healthcheck-path": "/ready"},
        cluster_check="service_annotations",
        cluster_reason="PathIgnoredForTcpHealthCheck",
    ),
    Scenario(
        "alb-instance",
        "alb",
        "the Service selects app=alb-instance-1, the pods are labelled app=alb-instance",
        None,
        None,
        (PodSpec("alb-instance-6c5d4-bcdef", _ip(8, 0), Behaviour()),),
        {**_FAST_ALB, ALB + "target-type": "instance", ALB + "healthcheck-path": "/healthz"},
        cluster_check="selector",
        cluster_reason="NoPodsMatchSelector",
        selector={"app": "alb-instance-1"},
        service_type="NodePort",
        aws=(("elb_target_health", "Target.FailedHealthChecks"),),
        aws_case="the NodePort has no endpoint behind it on any node",
    ),
    Scenario(
        "nlb-local",
        "nlb",
        "externalTrafficPolicy Local with instance targets: nodes without a pod fail the health check",
        None,
        None,
        (PodSpec("nlb-local-3b2c1-ghijk", _ip(9, 0), Behaviour()),),
        {**_FAST_NLB, NLB + "nlb-target-type": "instance"},
        cluster_check="traffic_policy",
        cluster_reason="ExternalTrafficPolicyLocal",
        traffic_policy="Local",
        aws=(("elb_target_health", "Target.FailedHealthChecks"),),
        aws_case="the two nodes without its pod fail the healthCheckNodePort, as designed",
    ),
    Scenario(
        "legacy-api",
        "nlb",
        "targetPort 8080, but the container declares and listens on port 80",
        "health_probe",
        "ConnectionRefused",
        (PodSpec("legacy-api-9e8f7-lmnop", _ip(10, 0), Behaviour(), listen_port=80),),
        dict(_FAST_NLB),
        cluster_check="target_port",
        cluster_reason="TargetPortNotExposed",
        container_port=80,
        aws=(("elb_target_health", "Target.FailedHealthChecks"),),
        aws_case="the NLB cannot connect to 8080 either",
    ),
    Scenario(
        "coupons",
        "alb",
        "success-codes 200-600: outside what an ALB accepts",
        "ingress_annotations",
        "InvalidSuccessCodes",
        (PodSpec("coupons-4f3e2-qrstu", _ip(11, 0), Behaviour()),),
        {**_FAST_ALB, ALB + "healthcheck-path": "/healthz", ALB + "success-codes": "200-600"},
        cluster_check="ingress_annotations",
        cluster_reason="InvalidSuccessCodes",
        aws_case="the controller cannot build it, so it has no load balancer",
    ),
    Scenario(
        "reviews",
        "alb",
        "the ALB's own security groups (alb.ingress.kubernetes.io/security-groups) without "
        "manage-backend-security-group-rules: the node group's security group has no rule for it",
        "pod_status",
        "ReadinessGateNotReady",
        (PodSpec("reviews-7c6b5-vwxyz", _ip(12, 0), Behaviour()),),
        {**_FAST_ALB, ALB + "healthcheck-path": "/healthz", ALB + "security-groups": "k8s-shop-reviews-frontend"},
        cluster_check="pod_status",
        cluster_reason="ReadinessGateNotReady",
        aws_fault="security_group",
        aws=(("security_groups", "HealthCheckPortNotAllowed"), ("elb_target_health", "Target.Timeout")),
        aws_case="the ALB says Target.Timeout, our probe from the node passes: the network path, its security "
        "group; the pod waits on its readiness gate",
        readiness_gate=True,
    ),
    Scenario(
        "ledger",
        "nlb",
        "an internal NLB whose subnets' traffic the node subnet's network ACL denies on the health-check port",
        "health_probe",
        None,
        (PodSpec("ledger-5d4c3-abcde", _ip(13, 0), Behaviour()),),
        {**_FAST_NLB, NLB + "scheme": "internal", NLB + "subnets": "ledger-internal-a,ledger-internal-b"},
        aws_fault="nacl",
        aws=(("network", "NaclDeniesHealthCheck"), ("elb_target_health", "Target.FailedHealthChecks")),
        aws_case="the NLB says Target.FailedHealthChecks, our probe from the node passes: the network path, a "
        "network ACL",
    ),
    Scenario(
        "ratings",
        "alb",
        "an HTTPRoute whose Service TargetGroupConfiguration sets healthCheckConfig, replacing the Gateway default's "
        "whole block: its path /healthz is lost, and / answers 404",
        "health_probe",
        "ResponseCodeMismatch",
        (PodSpec("ratings-5d4c3-vwxyz", _ip(14, 0), Behaviour(paths=frozenset({"/healthz"}))),),
        front="gateway",
        tgc={"healthCheckConfig": {"healthCheckInterval": 5, "healthCheckTimeout": 2}},
        cluster_check="gateway_config",
        cluster_reason="HealthCheckConfigReplacesDefault",
    ),
    Scenario(
        "wishlist",
        "alb",
        "an Ingress of Auto Mode's IngressClass (ip targets by default) sets group.name, which Auto Mode ignores",
        "ingress_annotations",
        "NotSupportedByAutoMode",
        (PodSpec("wishlist-8c7b6-abcde", _ip(15, 0), Behaviour()),),
        {
            ALB + "healthcheck-path": "/healthz",
            ALB + "healthcheck-interval-seconds": "5",
            ALB + "healthcheck-timeout-seconds": "2",
            ALB + "target-group-attributes": _DRAIN,
            ALB + "group.name": "shop",
        },
        front="auto-mode",
        cluster_check="ingress_annotations",
        cluster_reason="NotSupportedByAutoMode",
    ),
    Scenario(
        "pricing",
        "alb",
        "a gRPC health check expects status 0, but the server does not implement the default /AWS.ALB/healthcheck "
        "and answers 12 (UNIMPLEMENTED)",
        "health_probe",
        "ResponseCodeMismatch",
        (
            PodSpec(
                "pricing-2b1a0-fghij",
                _ip(16, 0),
                Behaviour(grpc_methods=frozenset({"/grpc.health.v1.Health/Check"})),
            ),
        ),
        {**_FAST_ALB, ALB + "backend-protocol-version": "GRPC", ALB + "success-codes": "0"},
        aws=(("elb_target_health", "Target.ResponseCodeMismatch"),),
        aws_case="the ALB's gRPC check gets status 12 too: the application's side",
    ),
    Scenario(
        "notifications",
        "nlb",
        "targets drain for 300 s (the default delay), but the pods have no preStop hook and are killed 30 s after "
        "deletion: every rollout cuts requests",
        "health_probe",
        None,
        (PodSpec("notifications-6e5f4-klmno", _ip(17, 0), Behaviour()),),
        {k: v for k, v in _HTTP_NLB.items() if k != NLB + "target-group-attributes"},
        cluster_check="rollout",
        cluster_reason="GracePeriodShorterThanDeregistrationDelay",
        pre_stop=False,
        grace=30,
        aws=(("rollout", "TerminatedWhileRegistered"),),
        aws_case="a pod of the last rollout is gone while its target still drains: the window, seen",
        departed=_ip(17, 8),
    ),
)

# The controller's ALB Gateway in namespace shop, with defaults (ip targets, /healthz every 5 s) for its routes.
GATEWAY_CLASS = "aws-alb"
GATEWAY = "shop"
GATEWAY_DEFAULTS = {
    "targetType": "ip",
    "healthCheckConfig": {"healthCheckPath": "/healthz", "healthCheckInterval": 5, "healthCheckTimeout": 2},
    "targetGroupAttributes": [{"key": "deregistration_delay.timeout_seconds", "value": "30"}],
}
# EKS Auto Mode's IngressClass and its parameters.
AUTO_MODE_CLASS = "eks-alb"

# Namespace label that makes the controller's webhook inject readiness gates into new pods.
READINESS_GATE_INJECT = {"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"}
READINESS_GATE_PREFIX = "target-health.elbv2.k8s.aws/"


def binding_name(scenario: Scenario) -> str:
    """The TargetGroupBinding (and target group) the controller makes: k8s-<ns>-<svc>-<hash>."""
    digest = hashlib.sha256(f"{NAMESPACE}/{scenario.name}".encode()).hexdigest()[:10]
    return f"k8s-{NAMESPACE[:8]}-{scenario.name[:8]}-{digest}"


# The AWS Load Balancer Controller, whose IAM role lacks a permission its logs name.
CONTROLLER_NAMESPACE = "kube-system"
CONTROLLER_NAME = "aws-load-balancer-controller"
CONTROLLER_PODS = ("aws-load-balancer-controller-7b9c6d5f4-2xk8p", "aws-load-balancer-controller-7b9c6d5f4-9qwrt")
CONTROLLER_DENIED_ACTION = "elasticloadbalancing:DescribeTargetHealth"
CONTROLLER_LOG = (
    '{"level":"info","ts":"2026-11-27T00:00:01Z","msg":"successfully built model","model":"shop/storefront"}\n'
    '{"level":"error","ts":"2026-11-27T00:00:02Z","msg":"Reconciler error","controller":"targetGroupBinding",'
    '"error":"operation error Elastic Load Balancing v2: DescribeTargetHealth, https response error StatusCode: 403, '
    "RequestID: 3f1c2b7a, api error AccessDenied: User: arn:aws:sts::111122223333:assumed-role/"
    "AmazonEKSLoadBalancerControllerRole/1764201600 is not authorized to perform: "
    f'{CONTROLLER_DENIED_ACTION} because no identity-based policy allows the {CONTROLLER_DENIED_ACTION} action"}}\n'
)
OTHER_NODES = ("ip-10-0-2-45.ec2.internal", "ip-10-0-3-67.ec2.internal")


def _labels(scenario: Scenario) -> dict[str, str]:
    return {"app.kubernetes.io/name": scenario.name} if scenario.selector is None else {"app": scenario.name}


@dataclass(frozen=True)
class GateCondition:
    """The controller's readiness-gate condition on a pod: True once the load balancer says healthy."""

    status: str = "False"
    reason: str = "Elb.RegistrationInProgress"
    message: str = "Target registration is in progress"
    since: str = "2026-11-27T00:00:00Z"


def _ready(scenario: Scenario, spec: PodSpec, gate: GateCondition | None) -> bool:
    """The pod's Ready condition: containers ready and, with a readiness gate, the gate True."""
    if spec.crash_looping:
        return False
    return not scenario.readiness_gate or (gate or GateCondition()).status == "True"


def pod_object(
    scenario: Scenario,
    spec: PodSpec,
    net: str,
    created: str = "2026-11-27T00:00:00Z",
    gate: GateCondition | None = None,
) -> dict[str, Any]:
    """One pod as the API server holds it; ``gate`` is its readiness-gate condition (gated scenarios)."""
    containers_ready = not spec.crash_looping
    status: dict[str, Any] = {
        "name": "app",
        "ready": containers_ready,
        "restartCount": 14 if spec.crash_looping else 0,
        "state": {"running": {"startedAt": created}},
    }
    if spec.crash_looping:
        status["state"] = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": "back-off 5m0s restarting failed container=app",
            }
        }
        status["lastState"] = {"terminated": {"reason": "Error", "exitCode": 1}}
    conditions: list[dict[str, Any]] = [
        {"type": "Ready", "status": "True" if _ready(scenario, spec, gate) else "False"},
        {"type": "ContainersReady", "status": "True" if containers_ready else "False"},
    ]
    pod_spec: dict[str, Any] = {
        "nodeName": NODE,
        "terminationGracePeriodSeconds": scenario.grace,
        "containers": [
            {
                "name": "app",
                "image": f"example/{scenario.name}:1.4.2",
                "ports": [{"name": "http", "containerPort": scenario.container_port}],
                **({"lifecycle": {"preStop": {"sleep": {"seconds": 10}}}} if scenario.pre_stop else {}),
            }
        ],
    }
    if scenario.readiness_gate:
        gate = gate or GateCondition(since=created)
        gate_type = READINESS_GATE_PREFIX + binding_name(scenario)
        pod_spec["readinessGates"] = [{"conditionType": gate_type}]
        conditions.append(
            {
                "type": gate_type,
                "status": gate.status,
                "reason": gate.reason,
                "message": gate.message,
                "lastTransitionTime": gate.since,
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": spec.name,
            "namespace": NAMESPACE,
            "labels": _labels(scenario),
            "creationTimestamp": created,
        },
        "spec": pod_spec,
        "status": {
            "phase": "Running",
            "podIP": f"{net}.{spec.host}",
            "hostIP": NODE_IP,
            "conditions": conditions,
            "containerStatuses": [status],
        },
    }


def _service(scenario: Scenario, index: int) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": scenario.target_port, "protocol": "TCP"}
    kind = scenario.service_type or ("LoadBalancer" if scenario.lb == "nlb" else "ClusterIP")
    spec: dict[str, Any] = {
        "selector": scenario.selector or _labels(scenario),
        "ports": [port],
        "clusterIP": f"10.100.{index}.10",
        "type": kind,
    }
    if kind != "ClusterIP":
        port["nodePort"] = 30080 + index
        spec["externalTrafficPolicy"] = scenario.traffic_policy
    if kind == "LoadBalancer" and scenario.traffic_policy == "Local":
        spec["healthCheckNodePort"] = 32080 + index
    annotations = dict(scenario.annotations) if scenario.lb == "nlb" else {}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": scenario.name, "namespace": NAMESPACE, "annotations": annotations},
        "spec": spec,
    }


def _controller() -> Iterator[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "aws-load-balancer-controller"}
    yield {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CONTROLLER_NAMESPACE}}
    yield {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": CONTROLLER_NAME, "namespace": CONTROLLER_NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "controller", "image": "public.ecr.aws/eks/aws-load-balancer-controller:v2.14.0"}
                    ]
                },
            },
        },
        "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2},
    }
    for name in CONTROLLER_PODS:
        yield {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": CONTROLLER_NAMESPACE, "labels": labels},
            "spec": {
                "nodeName": OTHER_NODES[0],
                "containers": [
                    {"name": "controller", "image": "public.ecr.aws/eks/aws-load-balancer-controller:v2.14.0"}
                ],
            },
            "status": {"phase": "Running", "podIP": "10.0.2.17"},
        }


def endpoint_slice(scenario: Scenario, net: str, gate: GateCondition | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{scenario.name}-x1y2z",
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": scenario.name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": scenario.target_port, "protocol": "TCP"}],
        # What the EndpointSlice controller would write: the pods the selector really matches.
        "endpoints": []
        if scenario.selector and scenario.selector.items() - _labels(scenario).items()
        else [
            {
                "addresses": [f"{net}.{pod.host}"],
                "conditions": {
                    "ready": _ready(scenario, pod, gate),
                    "serving": _ready(scenario, pod, gate),
                    "terminating": False,
                },
                "nodeName": NODE,
                "targetRef": {"kind": "Pod", "name": pod.name, "namespace": NAMESPACE},
            }
            for pod in scenario.pods
        ],
    }


def _ingress(scenario: Scenario) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": scenario.name, "namespace": NAMESPACE, "annotations": dict(scenario.annotations)},
        "spec": {
            "ingressClassName": AUTO_MODE_CLASS if scenario.front == "auto-mode" else "alb",
            "rules": [
                {
                    "host": f"{scenario.name}.shop.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": scenario.name, "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ],
        },
    }


def _gateway() -> Iterator[dict[str, Any]]:
    """The controller's ALB GatewayClass, a Gateway with a LoadBalancerConfiguration naming a default
    TargetGroupConfiguration, and EKS Auto Mode's IngressClass with its IngressClassParams."""
    yield {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS},
        "spec": {"controllerName": "gateway.k8s.aws/alb"},
        "status": {"conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": ""}]},
    }
    yield {
        "apiVersion": "gateway.k8s.aws/v1",
        "kind": "TargetGroupConfiguration",
        "metadata": {"name": "shop-gateway-defaults", "namespace": NAMESPACE},
        "spec": {"defaultConfiguration": GATEWAY_DEFAULTS},
    }
    yield {
        "apiVersion": "gateway.k8s.aws/v1",
        "kind": "LoadBalancerConfiguration",
        "metadata": {"name": "shop-gateway", "namespace": NAMESPACE},
        "spec": {"scheme": "internet-facing", "defaultTargetGroupConfiguration": {"name": "shop-gateway-defaults"}},
    }
    yield {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": GATEWAY, "namespace": NAMESPACE},
        "spec": {
            "gatewayClassName": GATEWAY_CLASS,
            "infrastructure": {
                "parametersRef": {
                    "group": "gateway.k8s.aws",
                    "kind": "LoadBalancerConfiguration",
                    "name": "shop-gateway",
                }
            },
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        },
    }
    yield {
        "apiVersion": "eks.amazonaws.com/v1",
        "kind": "IngressClassParams",
        "metadata": {"name": AUTO_MODE_CLASS},
        "spec": {"scheme": "internet-facing"},
    }
    yield {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": AUTO_MODE_CLASS},
        "spec": {
            "controller": "eks.amazonaws.com/alb",
            "parameters": {"apiGroup": "eks.amazonaws.com", "kind": "IngressClassParams", "name": AUTO_MODE_CLASS},
        },
    }


def _route(scenario: Scenario) -> Iterator[dict[str, Any]]:
    yield {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": scenario.name, "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"name": GATEWAY}],
            "hostnames": [f"{scenario.name}.shop.example.com"],
            "rules": [{"backendRefs": [{"name": scenario.name, "port": 80}]}],
        },
    }
    if scenario.tgc is not None:
        yield {
            "apiVersion": "gateway.k8s.aws/v1",
            "kind": "TargetGroupConfiguration",
            "metadata": {"name": scenario.name, "namespace": NAMESPACE},
            "spec": {"targetReference": {"name": scenario.name}, "defaultConfiguration": scenario.tgc},
        }


# The instances behind the nodes when there is no AWS side (the demo's moto gives them ids of its own).
INSTANCE_IDS = {
    NODE: "i-0123456789abcdef0",
    OTHER_NODES[0]: "i-0fedcba9876543210",
    OTHER_NODES[1]: "i-0fedcba9876543211",
}


def objects(
    net: str = DEFAULT_NET, created: str = "2026-11-27T00:00:00Z", instances: dict[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """Every object of the demo cluster; ``created`` stamps the pods, ``instances`` maps node → instance id."""
    ids = {**INSTANCE_IDS, **(instances or {})}
    yield {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": READINESS_GATE_INJECT}}
    yield {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE, "labels": {"topology.kubernetes.io/zone": "eu-west-1a"}},
        "spec": {"providerID": f"aws:///eu-west-1a/{ids[NODE]}"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": NODE_IP}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    for index, name in enumerate(OTHER_NODES):
        yield {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": f"eu-west-1{'bc'[index]}"}},
            "spec": {"providerID": f"aws:///eu-west-1{'bc'[index]}/{ids[name]}"},
            "status": {
                "addresses": [{"type": "InternalIP", "address": f"10.0.{2 + index}.45"}],
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
    yield from _controller()
    yield {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "alb"},
        "spec": {"controller": "ingress.k8s.aws/alb"},
    }
    yield from _gateway()
    for index, scenario in enumerate(SCENARIOS):
        yield _service(scenario, index)
        yield endpoint_slice(scenario, net)
        if scenario.front == "gateway":
            yield from _route(scenario)
        elif scenario.lb == "alb":
            yield _ingress(scenario)
        for spec in scenario.pods:
            yield pod_object(scenario, spec, net, created)


# lbdoctor itself, as the Helm chart installs it (release "lbdoctor" in namespace "lbdoctor"): the node agent's
# pod of its DaemonSet (the cluster role reads the agents it finds by owner), and the cluster role's pod,
# Service and Endpoints (``lbdoctor diagnose`` finds the Service by its labels and reads the node agents' probes
# from the cluster role through the API server's service proxy).
LBDOCTOR_NAMESPACE = "lbdoctor"
NODE_AGENT_DAEMONSET = "lbdoctor-node"
CLUSTER_SERVICE = "lbdoctor-cluster"
CLUSTER_PORT_NAME = "http-metrics"
_CHART_LABELS = {
    "app.kubernetes.io/name": "lbdoctor",
    "app.kubernetes.io/instance": "lbdoctor",
    "app.kubernetes.io/part-of": "lbdoctor",
}


def _lbdoctor_pod(
    name: str, component: str, owner: tuple[str, str], node: str, ip: str, created: str
) -> dict[str, Any]:
    kind, owner_name = owner
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": LBDOCTOR_NAMESPACE,
            "labels": {**_CHART_LABELS, "app.kubernetes.io/component": component},
            "creationTimestamp": created,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": kind,
                    "name": owner_name,
                    "uid": f"{owner_name}-uid",
                    "controller": True,
                }
            ],
        },
        "spec": {"nodeName": node, "hostNetwork": component == "node", "containers": [{"name": "lbdoctor"}]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "lbdoctor", "ready": True, "state": {"running": {}}}],
        },
    }


def node_agent_pod(ip: str, created: str = "2026-11-27T00:00:00Z") -> dict[str, Any]:
    """The node agent's pod: host network, so its IP is the node's (here, where the demo's agent listens)."""
    return _lbdoctor_pod("lbdoctor-node-x7k2p", "node", ("DaemonSet", NODE_AGENT_DAEMONSET), NODE, ip, created)


def cluster_role_objects(ip: str, port: int, created: str = "2026-11-27T00:00:00Z") -> Iterator[dict[str, Any]]:
    """The cluster role's pod, its Service (the chart's labels and port name) and the Service's Endpoints,
    which the API server's service proxy resolves (the demo's fake API server, like a real one)."""
    pod = _lbdoctor_pod(
        "lbdoctor-cluster-6d9f7c8b5-q2w4e", "cluster", ("ReplicaSet", "lbdoctor-cluster-6d9f7c8b5"),
        OTHER_NODES[0], ip, created,
    )  # fmt: skip
    yield pod
    labels = {**_CHART_LABELS, "app.kubernetes.io/component": "cluster"}
    yield {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": CLUSTER_SERVICE, "namespace": LBDOCTOR_NAMESPACE, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": "lbdoctor", "app.kubernetes.io/component": "cluster"},
            "ports": [{"name": CLUSTER_PORT_NAME, "port": 9850, "targetPort": CLUSTER_PORT_NAME, "protocol": "TCP"}],
        },
    }
    yield {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": CLUSTER_SERVICE, "namespace": LBDOCTOR_NAMESPACE, "labels": labels},
        "subsets": [
            {
                "addresses": [
                    {
                        "ip": ip,
                        "targetRef": {"kind": "Pod", "namespace": LBDOCTOR_NAMESPACE, "name": pod["metadata"]["name"]},
                    }
                ],
                "ports": [{"name": CLUSTER_PORT_NAME, "port": port, "protocol": "TCP"}],
            }
        ],
    }


def seed(
    state: ClusterState,
    net: str = DEFAULT_NET,
    created: str = "2026-11-27T00:00:00Z",
    instances: dict[str, str] | None = None,
) -> None:
    for obj in objects(net, created, instances):
        state.apply(obj)
    for pod in CONTROLLER_PODS:
        state.logs[(CONTROLLER_NAMESPACE, pod)] = CONTROLLER_LOG


def apps(net: str = DEFAULT_NET) -> list[App]:
    return [
        App(f"{net}.{spec.host}", spec.listen_port, spec.behaviour)
        for scenario in SCENARIOS
        for spec in scenario.pods
        if spec.behaviour is not None
    ]
