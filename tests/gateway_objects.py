"""Gateway API and controller-CRD manifests for tests, as users write them (then converted like the API's JSON)."""

from __future__ import annotations

from typing import Any

from exporter.kube import convert, convert_gateway
from exporter.model.gateway import FrontEnds
from exporter.model.snapshot import ClusterSnapshot

GW = "gateway.networking.k8s.io/v1"
AWS = "gateway.k8s.aws/v1"


def gateway_class(name: str = "aws-alb", controller: str = "gateway.k8s.aws/alb", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": name},
            "spec": {"controllerName": controller, **spec}}


def gateway(
    name: str = "web",
    namespace: str = "shop",
    class_name: str = "aws-alb",
    listeners: list[dict[str, Any]] | None = None,
    lbc: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "gatewayClassName": class_name,
        "listeners": listeners if listeners is not None else [{"name": "http", "port": 80, "protocol": "HTTP"}],
    }
    if lbc is not None:
        spec["infrastructure"] = {
            "parametersRef": {"group": "gateway.k8s.aws", "kind": "LoadBalancerConfiguration", "name": lbc}
        }
    return {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def route(
    kind: str = "HTTPRoute",
    name: str = "web",
    namespace: str = "shop",
    gateway_name: str = "web",
    gateway_namespace: str | None = None,
    backends: list[dict[str, Any]] | None = None,
    section: str | None = None,
) -> dict[str, Any]:
    parent: dict[str, Any] = {"name": gateway_name}
    if gateway_namespace is not None:
        parent["namespace"] = gateway_namespace
    if section is not None:
        parent["sectionName"] = section
    refs = backends if backends is not None else [{"name": "web", "port": 80}]
    return {
        "apiVersion": GW,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"parentRefs": [parent], "rules": [{"backendRefs": refs}]},
    }


def tgc(
    name: str,
    namespace: str = "shop",
    service: str | None = None,
    default: dict[str, Any] | None = None,
    routes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"defaultConfiguration": default or {}}
    if service is not None:
        spec["targetReference"] = {"name": service}
    if routes is not None:
        spec["routeConfigurations"] = routes
    return {"apiVersion": AWS, "kind": "TargetGroupConfiguration",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def lbc(name: str, namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": AWS, "kind": "LoadBalancerConfiguration",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def svc(
    name: str = "web",
    namespace: str = "shop",
    type_: str = "NodePort",
    port: int = 80,
    target_port: int | str = 8080,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": type_,
            "selector": {"app": name},
            "ports": [{"name": "http", "port": port, "targetPort": target_port, "nodePort": 30080}],
            **spec,
        },
    }


def pod(name: str = "web-1", namespace: str = "shop", app: str = "web", ips: tuple[str, ...] = ("10.0.0.5",),
        node: str = "node-a", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}],
                 **spec},
        "status": {"phase": "Running", "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips],
                   "containerStatuses": [{"name": "app", "ready": True, "state": {"running": {}}}]},
    }


_CONVERTERS = {
    "GatewayClass": ("gateway_classes", convert_gateway.gateway_class),
    "Gateway": ("gateways", convert_gateway.gateway),
    "TargetGroupConfiguration": ("target_group_configurations", convert_gateway.target_group_configuration),
    "LoadBalancerConfiguration": ("load_balancer_configurations", convert_gateway.load_balancer_configuration),
}


def snapshot(*objects: dict[str, Any], **extra: Any) -> ClusterSnapshot:
    """A snapshot of the manifests, each converted as the watch converts it."""
    front: dict[str, list[Any]] = {"routes": []}
    core: dict[str, list[Any]] = {"services": [], "pods": [], "nodes": [], "ingresses": [], "ingress_classes": []}
    for obj in objects:
        kind = obj["kind"]
        if kind in _CONVERTERS:
            field, converter = _CONVERTERS[kind]
            front.setdefault(field, []).append(converter(obj))
        elif kind.endswith("Route"):
            front["routes"].append(convert_gateway.route(kind)(obj))
        elif kind == "IngressClassParams":
            group = obj["apiVersion"].split("/")[0]
            front.setdefault("ingress_class_params", []).append(convert_gateway.ingress_class_params(group)(obj))
        elif kind == "Service":
            core["services"].append(convert.service(obj))
        elif kind == "Pod":
            core["pods"].append(convert.pod(obj))
        elif kind == "Node":
            core["nodes"].append(convert.node(obj))
        elif kind == "Ingress":
            core["ingresses"].append(convert.ingress(obj))
        elif kind == "IngressClass":
            core["ingress_classes"].append(convert.ingress_class(obj))
        else:
            raise ValueError(kind)
    return ClusterSnapshot.of(front_ends=FrontEnds.of(**front), **core, **extra)


def node(name: str = "node-a", addresses: tuple[str, ...] = ("10.0.1.1",)) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"providerID": "aws:///eu-west-1a/i-0123456789abcdef0"},
        "status": {"addresses": [{"type": "InternalIP", "address": a} for a in addresses],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }
