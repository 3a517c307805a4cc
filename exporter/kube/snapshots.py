"""Assemble a ClusterSnapshot from the stores: O(namespaces) thanks to the stores' shared views."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.kube import resources
from exporter.kube.store import Store
from exporter.model.gateway import FrontEnds
from exporter.model.index import ObjectIndex
from exporter.model.snapshot import ClusterSnapshot

# store name → ClusterSnapshot field
_FIELDS = {
    "pods": "pods",
    "services": "services",
    "endpointslices": "endpoint_slices",
    "ingresses": "ingresses",
    "ingressclasses": "ingress_classes",
    "targetgroupbindings": "target_group_bindings",
    "nodes": "nodes",
    "deployments": "deployments",
    "events": "events",
}


def build_snapshot(
    stores: Mapping[str, Store],
    generation: int,
    controller_logs: Mapping[str, str] | None = None,
    controller_logs_error: str | None = None,
) -> ClusterSnapshot:
    views: dict[str, Any] = {_FIELDS[name]: store.view() for name, store in stores.items() if name in _FIELDS}
    return ClusterSnapshot(
        generation=generation,
        controller_logs=dict(controller_logs or {}),
        controller_logs_error=controller_logs_error,
        front_ends=front_ends(stores),
        absent=frozenset(name for name, store in stores.items() if store.absent),
        forbidden=frozenset(name for name, store in stores.items() if store.forbidden),
        **views,
    )


# store name → FrontEnds field (routes are grouped by kind)
_FRONT_END_FIELDS = {
    resources.GATEWAY_CLASSES.name: "gateway_classes",
    resources.GATEWAYS.name: "gateways",
    resources.TARGET_GROUP_CONFIGURATIONS.name: "target_group_configurations",
    resources.LOAD_BALANCER_CONFIGURATIONS.name: "load_balancer_configurations",
    resources.INGRESS_CLASS_PARAMS.name: "ingress_class_params",
    resources.AUTO_MODE_INGRESS_CLASS_PARAMS.name: "auto_mode_ingress_class_params",
}
_ROUTE_KINDS = {
    resources.HTTP_ROUTES.name: "HTTPRoute",
    resources.GRPC_ROUTES.name: "GRPCRoute",
    resources.TCP_ROUTES.name: "TCPRoute",
    resources.UDP_ROUTES.name: "UDPRoute",
    resources.TLS_ROUTES.name: "TLSRoute",
}


def front_ends(stores: Mapping[str, Store]) -> FrontEnds:
    views: dict[str, Any] = {
        _FRONT_END_FIELDS[name]: store.view() for name, store in stores.items() if name in _FRONT_END_FIELDS
    }
    routes: dict[str, ObjectIndex[Any]] = {
        _ROUTE_KINDS[name]: store.view() for name, store in stores.items() if name in _ROUTE_KINDS
    }
    return FrontEnds(routes=routes, **views)
