"""The resources lbdoctor watches: where they live in the API and how to convert them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.kube import convert, convert_gateway
from exporter.model.gateway import AUTO_MODE_PARAMS_RESOURCE


@dataclass(frozen=True)
class Resource:
    name: str  # also the `resource` label of lbdoctor_cache_synced and friends
    group_version: str  # "v1" for the core group
    convert: Callable[[convert.Json], Any]
    optional: bool = False  # a CRD that may not be installed: its absence is not an error
    plural: str | None = None  # the API's name for it when ``name`` differs (two groups, one plural; pods twice)

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

# Gateway API (the versions the AWS Load Balancer Controller reads: Gateway API v1.6, all routes v1).
GATEWAY_CLASSES = Resource("gatewayclasses", "gateway.networking.k8s.io/v1", convert_gateway.gateway_class, True)
GATEWAYS = Resource("gateways", "gateway.networking.k8s.io/v1", convert_gateway.gateway, True)
HTTP_ROUTES = Resource("httproutes", "gateway.networking.k8s.io/v1", convert_gateway.route("HTTPRoute"), True)
GRPC_ROUTES = Resource("grpcroutes", "gateway.networking.k8s.io/v1", convert_gateway.route("GRPCRoute"), True)
TCP_ROUTES = Resource("tcproutes", "gateway.networking.k8s.io/v1", convert_gateway.route("TCPRoute"), True)
UDP_ROUTES = Resource("udproutes", "gateway.networking.k8s.io/v1", convert_gateway.route("UDPRoute"), True)
TLS_ROUTES = Resource("tlsroutes", "gateway.networking.k8s.io/v1", convert_gateway.route("TLSRoute"), True)
ROUTES = (HTTP_ROUTES, GRPC_ROUTES, TCP_ROUTES, UDP_ROUTES, TLS_ROUTES)
# The controller's own Gateway configuration (gateway.k8s.aws/v1, its storage version).
TARGET_GROUP_CONFIGURATIONS = Resource(
    "targetgroupconfigurations", "gateway.k8s.aws/v1", convert_gateway.target_group_configuration, True
)
LOAD_BALANCER_CONFIGURATIONS = Resource(
    "loadbalancerconfigurations", "gateway.k8s.aws/v1", convert_gateway.load_balancer_configuration, True
)
# IngressClassParams: the controller's, and EKS Auto Mode's (served only where Auto Mode is enabled).
INGRESS_CLASS_PARAMS = Resource(
    "ingressclassparams", "elbv2.k8s.aws/v1beta1", convert_gateway.ingress_class_params("elbv2.k8s.aws"), True
)
AUTO_MODE_INGRESS_CLASS_PARAMS = Resource(
    AUTO_MODE_PARAMS_RESOURCE,
    "eks.amazonaws.com/v1",
    convert_gateway.ingress_class_params("eks.amazonaws.com"),
    True,
    plural="ingressclassparams",
)
# Everything the front ends beyond Ingress/Service/TargetGroupBinding need; every one may be absent.
FRONT_ENDS = (
    GATEWAY_CLASSES,
    GATEWAYS,
    *ROUTES,
    TARGET_GROUP_CONFIGURATIONS,
    LOAD_BALANCER_CONFIGURATIONS,
    INGRESS_CLASS_PARAMS,
    AUTO_MODE_INGRESS_CLASS_PARAMS,
)

# The cluster role's view of its own node agents: pods of its namespace, with their owner.
NODE_AGENTS = Resource("node_agents", "v1", convert.agent_pod, plural="pods")
