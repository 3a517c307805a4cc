"""Typed views of the Gateway API objects and of the AWS front ends' own configuration resources.

Gateway API (``gateway.networking.k8s.io/v1``): GatewayClass, Gateway, and the routes (HTTPRoute, GRPCRoute,
TCPRoute, UDPRoute, TLSRoute, one ``Route`` type with its kind). The AWS Load Balancer Controller's
``gateway.k8s.aws/v1`` resources: TargetGroupConfiguration and LoadBalancerConfiguration. IngressClassParams,
of the controller (``elbv2.k8s.aws/v1beta1``) and of EKS Auto Mode (``eks.amazonaws.com/v1``).

Only what the health-check derivation and the checks read is kept. ``None`` means "not set": the
controller's merges are per field, so "unset" and "empty" must stay apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.model.index import ObjectIndex
from exporter.model.objects import ObjectMeta

GATEWAY_GROUP = "gateway.networking.k8s.io"
AWS_GATEWAY_GROUP = "gateway.k8s.aws"
AUTO_MODE_GROUP = "eks.amazonaws.com"
# The watched resource whose presence says EKS Auto Mode (its load balancing) is enabled on the cluster.
AUTO_MODE_PARAMS_RESOURCE = "ingressclassparams.eks.amazonaws.com"

ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "TCPRoute", "UDPRoute", "TLSRoute")


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class ParametersRef:
    group: str
    kind: str
    name: str
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayClass:
    meta: ObjectMeta
    controller: str  # spec.controllerName: gateway.k8s.aws/alb | gateway.k8s.aws/nlb | another implementation's
    parameters: ParametersRef | None = None
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    port: int
    protocol: str  # HTTP | HTTPS | TLS | TCP | UDP
    allowed_kinds: tuple[str, ...] | None = None  # allowedRoutes.kinds; None: the protocol's default kinds
    allowed_from: str = "Same"  # allowedRoutes.namespaces.from: Same | All | Selector | None


@dataclass(frozen=True, slots=True)
class Gateway:
    meta: ObjectMeta
    class_name: str
    listeners: tuple[Listener, ...] = ()
    parameters: ParametersRef | None = None  # spec.infrastructure.parametersRef (in the Gateway's namespace)
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class ParentRef:
    name: str
    namespace: str  # defaulted to the route's namespace
    kind: str = "Gateway"
    group: str = GATEWAY_GROUP
    section_name: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class BackendRef:
    name: str
    namespace: str  # defaulted to the route's namespace
    kind: str = "Service"
    group: str = ""
    port: int | None = None
    weight: int = 1


@dataclass(frozen=True, slots=True)
class RouteParentStatus:
    """What a controller wrote about the route's attachment to one parent."""

    controller: str
    parent: ParentRef
    conditions: tuple[Condition, ...] = ()

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)


@dataclass(frozen=True, slots=True)
class Route:
    meta: ObjectMeta
    kind: str  # one of ROUTE_KINDS
    parents: tuple[ParentRef, ...] = ()
    backends: tuple[BackendRef, ...] = ()  # every rule's backendRefs, in order
    status: tuple[RouteParentStatus, ...] = ()


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    """TargetGroupConfiguration ``healthCheckConfig``; every field optional."""

    path: str | None = None
    port: str | None = None  # "traffic-port", a number or a Service port name, as text
    protocol: str | None = None  # HTTP | HTTPS | TCP
    interval: int | None = None
    timeout: int | None = None
    healthy_threshold: int | None = None
    unhealthy_threshold: int | None = None
    http_codes: str | None = None  # matcher.httpCode
    grpc_codes: str | None = None  # matcher.grpcCode

    def set_fields(self) -> tuple[str, ...]:
        """The fields this block sets, by their names in the CRD."""
        names = {
            "path": "healthCheckPath",
            "port": "healthCheckPort",
            "protocol": "healthCheckProtocol",
            "interval": "healthCheckInterval",
            "timeout": "healthCheckTimeout",
            "healthy_threshold": "healthyThresholdCount",
            "unhealthy_threshold": "unhealthyThresholdCount",
            "http_codes": "matcher.httpCode",
            "grpc_codes": "matcher.grpcCode",
        }
        return tuple(crd for attribute, crd in names.items() if getattr(self, attribute) is not None)


@dataclass(frozen=True, slots=True)
class TargetGroupProps:
    """TargetGroupProps: the target group settings a TargetGroupConfiguration carries. ``None``: not set."""

    target_type: str | None = None  # instance | ip
    protocol: str | None = None
    protocol_version: str | None = None  # HTTP1 | HTTP2 | GRPC
    ip_address_type: str | None = None
    health_check: HealthCheckConfig | None = None
    attributes: Mapping[str, str] | None = None  # targetGroupAttributes, by key
    tags: Mapping[str, str] | None = None
    node_selector: bool | None = None  # only whether one is set


@dataclass(frozen=True, slots=True)
class RouteConfiguration:
    kind: str
    namespace: str
    name: str
    props: TargetGroupProps


@dataclass(frozen=True, slots=True)
class TargetGroupConfiguration:
    meta: ObjectMeta
    target_kind: str | None  # targetReference.kind (Service by default); None without a targetReference
    target_name: str | None
    default: TargetGroupProps = field(default_factory=TargetGroupProps)
    routes: tuple[RouteConfiguration, ...] = ()


@dataclass(frozen=True, slots=True)
class LoadBalancerConfiguration:
    meta: ObjectMeta
    merging_mode: str | None = None  # prefer-gateway-class (default) | prefer-gateway
    default_target_group_configuration: str | None = None  # a TGC's name, in this object's namespace
    ip_address_type: str | None = None  # ipv4 | dualstack | dualstack-without-public-ipv4
    scheme: str | None = None


@dataclass(frozen=True, slots=True)
class IngressClassParams:
    """IngressClassParams, cluster-scoped: the controller's (``elbv2.k8s.aws``) or EKS Auto Mode's
    (``eks.amazonaws.com``). ``group`` says which."""

    meta: ObjectMeta
    group: str
    target_type: str | None = None
    ip_address_type: str | None = None
    group_name: str | None = None
    scheme: str | None = None


def _empty() -> ObjectIndex[Any]:
    return ObjectIndex({})


@dataclass(frozen=True)
class FrontEnds:
    """The Gateway API objects and front-end configuration of a snapshot, each kind indexed ``ns/name``."""

    gateway_classes: ObjectIndex[GatewayClass] = field(default_factory=_empty)
    gateways: ObjectIndex[Gateway] = field(default_factory=_empty)
    routes: Mapping[str, ObjectIndex[Route]] = field(default_factory=dict)  # by kind
    target_group_configurations: ObjectIndex[TargetGroupConfiguration] = field(default_factory=_empty)
    load_balancer_configurations: ObjectIndex[LoadBalancerConfiguration] = field(default_factory=_empty)
    ingress_class_params: ObjectIndex[IngressClassParams] = field(default_factory=_empty)  # elbv2.k8s.aws
    auto_mode_ingress_class_params: ObjectIndex[IngressClassParams] = field(default_factory=_empty)

    @classmethod
    def of(
        cls,
        *,
        gateway_classes: Iterable[GatewayClass] = (),
        gateways: Iterable[Gateway] = (),
        routes: Iterable[Route] = (),
        target_group_configurations: Iterable[TargetGroupConfiguration] = (),
        load_balancer_configurations: Iterable[LoadBalancerConfiguration] = (),
        ingress_class_params: Iterable[IngressClassParams] = (),
    ) -> FrontEnds:
        by_kind: dict[str, list[Route]] = {}
        for route in routes:
            by_kind.setdefault(route.kind, []).append(route)
        params = list(ingress_class_params)
        return cls(
            gateway_classes=ObjectIndex.of(gateway_classes),
            gateways=ObjectIndex.of(gateways),
            routes={kind: ObjectIndex.of(items) for kind, items in by_kind.items()},
            target_group_configurations=ObjectIndex.of(target_group_configurations),
            load_balancer_configurations=ObjectIndex.of(load_balancer_configurations),
            ingress_class_params=ObjectIndex.of(p for p in params if p.group != AUTO_MODE_GROUP),
            auto_mode_ingress_class_params=ObjectIndex.of(p for p in params if p.group == AUTO_MODE_GROUP),
        )

    def all_routes(self) -> Iterator[Route]:
        for kind in ROUTE_KINDS:
            index = self.routes.get(kind)
            if index is not None:
                yield from index.values()

    def route(self, kind: str, namespace: str, name: str) -> Route | None:
        index = self.routes.get(kind)
        return index.get(f"{namespace}/{name}") if index is not None else None

    def gateway(self, namespace: str, name: str) -> Gateway | None:
        return self.gateways.get(f"{namespace}/{name}")
