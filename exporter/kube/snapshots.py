"""Assemble a ClusterSnapshot from the stores: O(namespaces) thanks to the stores' shared views."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.kube.store import Store
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
        absent=frozenset(name for name, store in stores.items() if store.absent),
        forbidden=frozenset(name for name, store in stores.items() if store.forbidden),
        **views,
    )
