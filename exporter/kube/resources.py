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
    plural: str | None = None  # the API's name for it, when ``name`` differs (a second view of pods)

    def path(self, namespace: str | None = None) -> str:
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        plural = self.plural or self.name
        if namespace:
            return f"{base}/namespaces/{namespace}/{plural}"
        return f"{base}/{plural}"


PODS = Resource("pods", "v1", convert.pod)
SERVICES = Resource("services", "v1", convert.service)
ENDPOINT_SLICES = Resource("endpointslices", "discovery.k8s.io/v1", convert.endpoint_slice)
INGRESSES = Resource("ingresses", "networking.k8s.io/v1", convert.ingress)
INGRESS_CLASSES = Resource("ingressclasses", "networking.k8s.io/v1", convert.ingress_class)
TARGET_GROUP_BINDINGS = Resource("targetgroupbindings", "elbv2.k8s.aws/v1beta1", convert.target_group_binding, True)
NODES = Resource("nodes", "v1", convert.node)
DEPLOYMENTS = Resource("deployments", "apps/v1", convert.deployment)
EVENTS = Resource("events", "v1", convert.event)
# The cluster role's view of its own node agents: pods of its namespace, with their owner.
NODE_AGENTS = Resource("node_agents", "v1", convert.agent_pod, plural="pods")
