"""The resources lbdoctor watches: where they live in the API and how to convert them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.kube import convert


@dataclass(frozen=True)
class Resource:
    name: str  # also the `resource` label of lbdoctor_cache_synced and friends
    group_version: str  # "v1" for the core group
    convert: Callable[[convert.Json], Any]
    optional: bool = False  # a CRD that may not be installed: its absence is not an error

    def path(self, namespace: str | None = None) -> str:
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        if namespace:
            return f"{base}/namespaces/{namespace}/{self.name}"
        return f"{base}/{self.name}"


PODS = Resource("pods", "v1", convert.pod)
SERVICES = Resource("services", "v1", convert.service)
ENDPOINT_SLICES = Resource("endpointslices", "discovery.k8s.io/v1", convert.endpoint_slice)
INGRESSES = Resource("ingresses", "networking.k8s.io/v1", convert.ingress)
INGRESS_CLASSES = Resource("ingressclasses", "networking.k8s.io/v1", convert.ingress_class)
TARGET_GROUP_BINDINGS = Resource("targetgroupbindings", "elbv2.k8s.aws/v1beta1", convert.target_group_binding, True)
NODES = Resource("nodes", "v1", convert.node)
DEPLOYMENTS = Resource("deployments", "apps/v1", convert.deployment)
EVENTS = Resource("events", "v1", convert.event)
