"""Gateway API and front-end configuration JSON → model objects. Tolerant like ``convert``: a missing or
mistyped field becomes "not set", never an exception."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exporter.kube.convert import Json, _int, _list, _map, _obj, meta
from exporter.model.gateway import (
    GATEWAY_GROUP,
    BackendRef,
    Condition,
    Gateway,
    GatewayClass,
    HealthCheckConfig,
    IngressClassParams,
    Listener,
    LoadBalancerConfiguration,
    ParametersRef,
    ParentRef,
    Route,
    RouteConfiguration,
    RouteParentStatus,
    TargetGroupConfiguration,
    TargetGroupProps,
)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _conditions(raw: Any) -> tuple[Condition, ...]:
    return tuple(
        Condition(
            type=str(_obj(c).get("type") or ""),
            status=str(_obj(c).get("status") or "Unknown"),
            reason=str(_obj(c).get("reason") or ""),
            message=str(_obj(c).get("message") or "")[:500],
        )
        for c in _list(raw)
        if _obj(c).get("type")
    )


def _parameters(raw: Any, namespace: str | None) -> ParametersRef | None:
    ref = _obj(raw)
    name = _text(ref.get("name"))
    if name is None:
        return None
    return ParametersRef(
        group=str(ref.get("group") or ""),
        kind=str(ref.get("kind") or ""),
        name=name,
        namespace=_text(ref.get("namespace")) or namespace,
    )


def gateway_class(raw: Json) -> GatewayClass:
    spec = _obj(raw.get("spec"))
    return GatewayClass(
        meta=meta(raw),
        controller=str(spec.get("controllerName") or ""),
        parameters=_parameters(spec.get("parametersRef"), None),
        conditions=_conditions(_obj(raw.get("status")).get("conditions")),
    )


def _listener(raw: Any) -> Listener | None:
    item = _obj(raw)
    port = _int(item.get("port"))
    if port is None:
        return None
    allowed = _obj(item.get("allowedRoutes"))
    kinds_raw = allowed.get("kinds")
    kinds = (
        tuple(str(_obj(k).get("kind")) for k in _list(kinds_raw) if _obj(k).get("kind"))
        if isinstance(kinds_raw, list)
        else None
    )
    return Listener(
        name=str(item.get("name") or ""),
        port=port,
        protocol=str(item.get("protocol") or "").upper(),
        allowed_kinds=kinds or None,
        allowed_from=str(_obj(allowed.get("namespaces")).get("from") or "Same"),
    )


def gateway(raw: Json) -> Gateway:
    m = meta(raw)
    spec = _obj(raw.get("spec"))
    listeners = tuple(found for item in _list(spec.get("listeners")) if (found := _listener(item)) is not None)
    return Gateway(
        meta=m,
        class_name=str(spec.get("gatewayClassName") or ""),
        listeners=listeners,
        parameters=_parameters(_obj(spec.get("infrastructure")).get("parametersRef"), m.namespace),
        conditions=_conditions(_obj(raw.get("status")).get("conditions")),
    )


def _parent(raw: Any, namespace: str) -> ParentRef | None:
    ref = _obj(raw)
    name = _text(ref.get("name"))
    if name is None:
        return None
    return ParentRef(
        name=name,
        namespace=_text(ref.get("namespace")) or namespace,
        kind=_text(ref.get("kind")) or "Gateway",
        group=str(ref["group"]) if isinstance(ref.get("group"), str) else GATEWAY_GROUP,
        section_name=_text(ref.get("sectionName")),
        port=_int(ref.get("port")),
    )


def _backend(raw: Any, namespace: str) -> BackendRef | None:
    ref = _obj(raw)
    name = _text(ref.get("name"))
    if name is None:
        return None
    weight = _int(ref.get("weight"))
    return BackendRef(
        name=name,
        namespace=_text(ref.get("namespace")) or namespace,
        kind=_text(ref.get("kind")) or "Service",
        group=str(ref.get("group") or ""),
        port=_int(ref.get("port")),
        weight=1 if weight is None else weight,
    )


def route(kind: str) -> Callable[[Json], Route]:
    """The converter of one route kind (HTTPRoute, GRPCRoute, TCPRoute, UDPRoute, TLSRoute)."""

    def convert(raw: Json) -> Route:
        m = meta(raw)
        spec = _obj(raw.get("spec"))
        parents = tuple(p for item in _list(spec.get("parentRefs")) if (p := _parent(item, m.namespace)) is not None)
        backends = tuple(
            b
            for rule in _list(spec.get("rules"))
            for item in _list(_obj(rule).get("backendRefs"))
            if (b := _backend(item, m.namespace)) is not None
        )
        statuses = []
        for item in _list(_obj(raw.get("status")).get("parents")):
            entry = _obj(item)
            parent = _parent(entry.get("parentRef"), m.namespace)
            if parent is not None:
                statuses.append(
                    RouteParentStatus(
                        controller=str(entry.get("controllerName") or ""),
                        parent=parent,
                        conditions=_conditions(entry.get("conditions")),
                    )
                )
        return Route(meta=m, kind=kind, parents=parents, backends=backends, status=tuple(statuses))

    return convert


def _health_check(raw: Any) -> HealthCheckConfig | None:
    if not isinstance(raw, dict):
        return None
    matcher = _obj(raw.get("matcher"))
    port = raw.get("healthCheckPort")
    return HealthCheckConfig(
        path=_text(raw.get("healthCheckPath")),
        port=str(port) if isinstance(port, (str, int)) and not isinstance(port, bool) and str(port) else None,
        protocol=_text(raw.get("healthCheckProtocol")),
        interval=_int(raw.get("healthCheckInterval")),
        timeout=_int(raw.get("healthCheckTimeout")),
        healthy_threshold=_int(raw.get("healthyThresholdCount")),
        unhealthy_threshold=_int(raw.get("unhealthyThresholdCount")),
        http_codes=_text(matcher.get("httpCode")),
        grpc_codes=_text(matcher.get("grpcCode")),
    )


def target_group_props(raw: Any) -> TargetGroupProps:
    props = _obj(raw)
    attributes = props.get("targetGroupAttributes")
    return TargetGroupProps(
        target_type=_text(props.get("targetType")),
        protocol=_text(props.get("protocol")),
        protocol_version=_text(props.get("protocolVersion")),
        ip_address_type=_text(props.get("ipAddressType")),
        health_check=_health_check(props.get("healthCheckConfig")),
        attributes=(
            {str(_obj(a).get("key")): str(_obj(a).get("value") or "") for a in attributes if _obj(a).get("key")}
            if isinstance(attributes, list)
            else None
        ),
        tags=_map(props.get("tags")) if isinstance(props.get("tags"), dict) else None,
        node_selector=True if isinstance(props.get("nodeSelector"), dict) else None,
    )


def target_group_configuration(raw: Json) -> TargetGroupConfiguration:
    spec = _obj(raw.get("spec"))
    reference = spec.get("targetReference")
    target_kind = target_name = None
    if isinstance(reference, dict):
        target_kind = _text(reference.get("kind")) or "Service"
        target_name = _text(reference.get("name"))
    routes = []
    for item in _list(spec.get("routeConfigurations")):
        entry = _obj(item)
        identifier = _obj(entry.get("routeIdentifier"))
        routes.append(
            RouteConfiguration(
                kind=str(identifier.get("kind") or ""),
                namespace=str(identifier.get("namespace") or ""),
                name=str(identifier.get("name") or ""),
                props=target_group_props(entry.get("targetGroupProps")),
            )
        )
    return TargetGroupConfiguration(
        meta=meta(raw),
        target_kind=target_kind,
        target_name=target_name,
        default=target_group_props(spec.get("defaultConfiguration")),
        routes=tuple(routes),
    )


def load_balancer_configuration(raw: Json) -> LoadBalancerConfiguration:
    spec = _obj(raw.get("spec"))
    return LoadBalancerConfiguration(
        meta=meta(raw),
        merging_mode=_text(spec.get("mergingMode")),
        default_target_group_configuration=_text(_obj(spec.get("defaultTargetGroupConfiguration")).get("name")),
        ip_address_type=_text(spec.get("ipAddressType")),
        scheme=_text(spec.get("scheme")),
    )


def ingress_class_params(group: str) -> Callable[[Json], IngressClassParams]:
    """IngressClassParams of the controller (``elbv2.k8s.aws``) or of EKS Auto Mode (``eks.amazonaws.com``)."""

    def convert(raw: Json) -> IngressClassParams:
        spec = _obj(raw.get("spec"))
        return IngressClassParams(
            meta=meta(raw),
            group=group,
            target_type=_text(spec.get("targetType")),
            ip_address_type=_text(spec.get("ipAddressType")),
            group_name=_text(_obj(spec.get("group")).get("name")),
            scheme=_text(spec.get("scheme")),
        )

    return convert
