"""Model objects for unit tests, with the defaults a real cluster would have."""

from __future__ import annotations

from typing import Any

from exporter.model.objects import (
    ContainerPort,
    ContainerStatus,
    Ingress,
    IngressBackend,
    IngressClass,
    ObjectMeta,
    Pod,
    PodCondition,
    Service,
    ServicePort,
)

NODE = "node-a"


def service(
    name: str = "web",
    *,
    namespace: str = "shop",
    type: str = "ClusterIP",
    annotations: dict[str, str] | None = None,
    selector: dict[str, str] | None = None,
    ports: tuple[ServicePort, ...] | None = None,
    **spec: Any,
) -> Service:
    return Service(
        meta=ObjectMeta(namespace, name, annotations=annotations or {}),
        type=type,
        selector={"app": name} if selector is None else selector,
        ports=ports or (ServicePort("http", 80, 8080, node_port=30080),),
        **spec,
    )


def nlb(name: str = "web", annotations: dict[str, str] | None = None, **spec: Any) -> Service:
    base = {
        "service.beta.kubernetes.io/aws-load-balancer-type": "external",
        "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
    }
    return service(name, type="LoadBalancer", annotations={**base, **(annotations or {})}, **spec)


def pod(
    name: str = "web-1",
    *,
    app: str = "web",
    ip: str | None = "10.0.0.1",
    node: str = NODE,
    namespace: str = "shop",
    phase: str = "Running",
    ready: bool = True,
    ports: tuple[ContainerPort, ...] = (ContainerPort("http", 8080),),
    waiting: str | None = None,
    gates: tuple[str, ...] = (),
    conditions: tuple[PodCondition, ...] = (),
) -> Pod:
    return Pod(
        meta=ObjectMeta(namespace, name, labels={"app": app}),
        node_name=node,
        phase=phase,
        pod_ip=ip,
        ports=ports,
        container_statuses=(ContainerStatus("app", ready, 3 if waiting else 0, waiting_reason=waiting),),
        conditions=conditions,
        readiness_gates=gates,
    )


def ingress(
    name: str = "web", *, service_name: str = "web", port: int = 80, annotations: dict[str, str] | None = None
) -> Ingress:
    base = {"alb.ingress.kubernetes.io/target-type": "ip"}
    return Ingress(
        meta=ObjectMeta("shop", name, annotations={**base, **(annotations or {})}),
        class_name="alb",
        backends=(IngressBackend(service_name, port, None, "web.example.com", "/"),),
    )


ALB_CLASS = IngressClass(ObjectMeta("", "alb"), "ingress.k8s.aws/alb")
