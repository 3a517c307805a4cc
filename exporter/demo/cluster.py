"""The demo cluster: Kubernetes objects for a small EKS-like shop, and the apps behind its pods.

Each scenario is one load-balanced service with the runbook case it demonstrates and the check and
reason lbdoctor must report for it. Tests assert exactly these expectations.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from exporter.demo.apps import App, Behaviour
from exporter.fakeapi.state import ClusterState

NAMESPACE = "shop"
NODE = "ip-10-0-1-23.ec2.internal"
NODE_IP = "127.0.0.1"
APP_PORT = 8080

ALB = "alb.ingress.kubernetes.io/"
NLB = "service.beta.kubernetes.io/aws-load-balancer-"


@dataclass(frozen=True)
class PodSpec:
    name: str
    ip: str
    behaviour: Behaviour | None  # None: nothing listens on the app port
    listen_port: int = APP_PORT
    crash_looping: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    lb: str  # alb | nlb
    case: str  # the runbook case, in words
    expect_check: str
    expect_reason: str | None  # None: healthy
    pods: tuple[PodSpec, ...]
    annotations: dict[str, str] = field(default_factory=dict)  # on the Ingress (ALB) or Service (NLB)
    expect_flapping: bool = False


_FAST_ALB = {
    ALB + "target-type": "ip",
    ALB + "healthcheck-interval-seconds": "5",
    ALB + "healthcheck-timeout-seconds": "2",
}
_FAST_NLB = {
    NLB + "type": "external",
    NLB + "nlb-target-type": "ip",
    NLB + "healthcheck-interval": "5",
    NLB + "healthcheck-timeout": "2",
    NLB + "healthcheck-healthy-threshold": "2",
    NLB + "healthcheck-unhealthy-threshold": "2",
}
_HTTP_NLB = {**_FAST_NLB, NLB + "healthcheck-protocol": "http"}


def _ip(service: int, pod: int) -> str:
    return f"127.0.{10 + service}.{pod + 1}"


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
    ),
    Scenario(
        "orders",
        "nlb",
        "the app listens on 9090, not on the target port 8080",
        "health_probe",
        "ConnectionRefused",
        (PodSpec("orders-8a7b6-zabcd", _ip(3, 0), Behaviour(), listen_port=9090),),
        dict(_FAST_NLB),
    ),
    Scenario(
        "search",
        "alb",
        "the app answers in 4 s, the health check times out after 2 s",
        "health_probe",
        "Timeout",
        (PodSpec("search-9b8c7-efghi", _ip(4, 0), Behaviour(delay=4.0)),),
        {**_FAST_ALB, ALB + "healthcheck-path": "/healthz"},
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
    ),
    Scenario(
        "inventory",
        "nlb",
        "an NLB sets a health-check path, but its protocol is TCP, so the path is ignored",
        "service_annotations",
        "PathIgnoredForTcpHealthCheck",
        (PodSpec("inventory-1a2b3-yzabc", _ip(7, 0), Behaviour()),),
        {**_FAST_NLB, NLB + "healthcheck-path": "/ready"},
    ),
)


def _labels(scenario: Scenario) -> dict[str, str]:
    return {"app.kubernetes.io/name": scenario.name}


def _pod(scenario: Scenario, spec: PodSpec) -> dict[str, Any]:
    ready = not spec.crash_looping
    status: dict[str, Any] = {
        "name": "app",
        "ready": ready,
        "restartCount": 14 if spec.crash_looping else 0,
        "state": {"running": {"startedAt": "2026-11-27T00:00:00Z"}},
    }
    if spec.crash_looping:
        status["state"] = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": "back-off 5m0s restarting failed container=app",
            }
        }
        status["lastState"] = {"terminated": {"reason": "Error", "exitCode": 1}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": spec.name, "namespace": NAMESPACE, "labels": _labels(scenario)},
        "spec": {
            "nodeName": NODE,
            "containers": [
                {
                    "name": "app",
                    "image": f"example/{scenario.name}:1.4.2",
                    "ports": [{"name": "http", "containerPort": APP_PORT}],
                }
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": spec.ip,
            "hostIP": NODE_IP,
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"},
                {"type": "ContainersReady", "status": "True" if ready else "False"},
            ],
            "containerStatuses": [status],
        },
    }


def _service(scenario: Scenario, index: int) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": APP_PORT, "protocol": "TCP"}
    spec: dict[str, Any] = {
        "selector": _labels(scenario),
        "ports": [port],
        "clusterIP": f"10.100.{index}.10",
        "type": "ClusterIP",
    }
    annotations: dict[str, str] = {}
    if scenario.lb == "nlb":
        spec["type"] = "LoadBalancer"
        spec["externalTrafficPolicy"] = "Cluster"
        port["nodePort"] = 30080 + index
        annotations = dict(scenario.annotations)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": scenario.name, "namespace": NAMESPACE, "annotations": annotations},
        "spec": spec,
    }


def _endpoint_slice(scenario: Scenario) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{scenario.name}-x1y2z",
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": scenario.name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": APP_PORT, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [pod.ip],
                "conditions": {"ready": not pod.crash_looping, "serving": not pod.crash_looping, "terminating": False},
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
            "ingressClassName": "alb",
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


def objects() -> Iterator[dict[str, Any]]:
    yield {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    yield {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE, "labels": {"topology.kubernetes.io/zone": "eu-west-1a"}},
        "spec": {"providerID": "aws:///eu-west-1a/i-0123456789abcdef0"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": NODE_IP}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    yield {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "alb"},
        "spec": {"controller": "ingress.k8s.aws/alb"},
    }
    for index, scenario in enumerate(SCENARIOS):
        yield _service(scenario, index)
        yield _endpoint_slice(scenario)
        if scenario.lb == "alb":
            yield _ingress(scenario)
        for spec in scenario.pods:
            yield _pod(scenario, spec)


def seed(state: ClusterState) -> None:
    for obj in objects():
        state.apply(obj)


def apps() -> list[App]:
    return [
        App(spec.ip, spec.listen_port, spec.behaviour)
        for scenario in SCENARIOS
        for spec in scenario.pods
        if spec.behaviour is not None
    ]
