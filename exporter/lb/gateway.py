"""Gateway API through the AWS Load Balancer Controller: which routes become target groups, and with what
health check.

Mirrors the controller (August 2026, ``pkg/gateway``): a route attaches to the listeners of its parent
Gateways whose GatewayClass names ``gateway.k8s.aws/alb`` (HTTPRoute, GRPCRoute) or ``gateway.k8s.aws/nlb``
(TCPRoute, UDPRoute, TLSRoute); each Service backend becomes a target group whose settings come from

1. the TargetGroupConfiguration (TGC) in the Service's namespace whose ``targetReference`` names the Service,
2. over the Gateway's default TGC: the ``defaultTargetGroupConfiguration`` of the Gateway's and the
   GatewayClass's LoadBalancerConfiguration, merged by the GatewayClass one's ``mergingMode``
   (``prefer-gateway-class`` by default; only the winner's ``routeConfigurations`` count),
3. over the controller's defaults (different from Ingress: success codes ``200-399``, thresholds 3/3).

Within one TGC, the ``routeConfigurations`` entry matching the route best (kind:namespace:name, then
kind:namespace, then kind) is merged over ``defaultConfiguration``. Every merge is shallow, per top-level
field: a ``healthCheckConfig`` replaces the whole block below it; ``tags`` and ``targetGroupAttributes``
merge per key. The owner of the target groups, and of their results, is the route.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from exporter.lb import annotations as ann
from exporter.lb.backends import Backend, OwnerPlan, bounded, ipv6_node_problems
from exporter.lb.healthcheck import (
    ALB,
    DUALSTACK_TYPES,
    GRPC_DEFAULT_CODES,
    GRPC_DEFAULT_PATH,
    HTTP,
    HTTPS,
    INSTANCE,
    IP,
    IPV4,
    IPV6,
    NLB,
    TCP,
    ControllerConfig,
    HealthCheckSpec,
    Problem,
    Resolution,
    _instance_needs_node_port,
    _Reader,
)
from exporter.model.gateway import (
    AWS_GATEWAY_GROUP,
    GATEWAY_GROUP,
    Gateway,
    HealthCheckConfig,
    Listener,
    LoadBalancerConfiguration,
    Route,
    TargetGroupConfiguration,
    TargetGroupProps,
)
from exporter.model.objects import Service
from exporter.model.results import Check, ObjectRef, Reason, Status
from exporter.model.snapshot import ClusterSnapshot

ALB_GATEWAY_CONTROLLER = "gateway.k8s.aws/alb"
NLB_GATEWAY_CONTROLLER = "gateway.k8s.aws/nlb"
CONTROLLERS = {ALB_GATEWAY_CONTROLLER: ALB, NLB_GATEWAY_CONTROLLER: NLB}
ROUTE_KINDS_BY_LB = {ALB: ("HTTPRoute", "GRPCRoute"), NLB: ("TCPRoute", "UDPRoute", "TLSRoute")}
# The route kinds a listener accepts when it does not list allowedRoutes.kinds (the controller's table).
DEFAULT_KINDS = {
    "TCP": ("TCPRoute",),
    "UDP": ("UDPRoute",),
    "TLS": ("TLSRoute", "TCPRoute"),
    "HTTP": ("HTTPRoute",),
    "HTTPS": ("HTTPRoute", "GRPCRoute"),
}
PREFER_GATEWAY_CLASS, PREFER_GATEWAY = "prefer-gateway-class", "prefer-gateway"

# Defaults of Gateway target groups (pkg/gateway/model/model_build_target_group.go).
DEFAULT_HTTP_CODES = "200-399"
DEFAULT_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_THRESHOLD = 15, 5, 3
LOCAL_INTERVAL, LOCAL_TIMEOUT, LOCAL_THRESHOLD = 10, 6, 2  # NLB instance targets, externalTrafficPolicy Local

CHECK = Check.GATEWAY_CONFIG


@dataclass(frozen=True, slots=True)
class Layer:
    """One TargetGroupProps layer of the merge and where it came from (for messages)."""

    props: TargetGroupProps
    source: str  # "TargetGroupConfiguration ns/name" (+ " routeConfigurations[kind:ns:name]")


@dataclass(frozen=True, slots=True)
class GatewayContext:
    gateway: Gateway
    lb: str  # alb | nlb
    default_tgc: TargetGroupConfiguration | None  # the merged default TGC of the Gateway and its class
    default_source: str
    lb_ip_address_type: str
    problems: tuple[Problem, ...] = ()

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("Gateway", self.gateway.meta.namespace, self.gateway.meta.name)


def gateway_context(gateway: Gateway, snapshot: ClusterSnapshot) -> GatewayContext | None:
    """The Gateway's load balancer type and merged defaults; None when the controller does not own it."""
    front_ends = snapshot.front_ends
    gateway_class = front_ends.gateway_classes.get(gateway.class_name)
    if gateway_class is None or gateway_class.controller not in CONTROLLERS:
        return None
    lb = CONTROLLERS[gateway_class.controller]
    problems: list[Problem] = []
    class_lbc = gw_lbc = None
    if gateway_class.parameters is not None:
        ref = gateway_class.parameters
        if ref.namespace is None:
            problems.append(
                _problem(
                    Reason.INVALID_CONFIGURATION,
                    f"GatewayClass {gateway_class.meta.name} names LoadBalancerConfiguration {ref.name} without a "
                    f"namespace: the controller refuses it ('Namespace must be specified in ParametersRef')",
                    f"add spec.parametersRef.namespace to GatewayClass {gateway_class.meta.name}",
                )
            )
        else:
            class_lbc = _lbc(snapshot, ref.group, ref.kind, ref.namespace, ref.name, problems, "GatewayClass", gateway)
    if gateway.parameters is not None:
        ref = gateway.parameters
        gw_lbc = _lbc(snapshot, ref.group, ref.kind, gateway.meta.namespace, ref.name, problems, "Gateway", gateway)
    class_tgc = _default_tgc(snapshot, class_lbc, problems)
    gw_tgc = _default_tgc(snapshot, gw_lbc, problems)
    mode = (class_lbc.merging_mode if class_lbc is not None else None) or PREFER_GATEWAY_CLASS
    merged, source = _merge_defaults(class_tgc, gw_tgc, mode)
    # The load balancer's IP address type: the merged LoadBalancerConfiguration (GatewayClass's wins by default).
    types = [c.ip_address_type for c in (class_lbc, gw_lbc) if c is not None and c.ip_address_type]
    if mode == PREFER_GATEWAY:
        types.reverse()
    return GatewayContext(gateway, lb, merged, source, types[0] if types else IPV4, tuple(problems))


def _lbc(
    snapshot: ClusterSnapshot,
    group: str,
    kind: str,
    namespace: str,
    name: str,
    problems: list[Problem],
    holder: str,
    gateway: Gateway,
) -> LoadBalancerConfiguration | None:
    if group != AWS_GATEWAY_GROUP or kind != "LoadBalancerConfiguration":
        return None
    found = snapshot.front_ends.load_balancer_configurations.get(f"{namespace}/{name}")
    if found is None:
        problems.append(
            _problem(
                Reason.LOAD_BALANCER_CONFIGURATION_NOT_FOUND,
                f"the {holder} of Gateway {gateway.meta.key} names LoadBalancerConfiguration {namespace}/{name}, "
                f"which does not exist: the controller cannot reconcile the Gateway",
                f"create LoadBalancerConfiguration {namespace}/{name} or fix the {holder}'s parametersRef",
            )
        )
    return found


def _default_tgc(
    snapshot: ClusterSnapshot, lbc: LoadBalancerConfiguration | None, problems: list[Problem]
) -> TargetGroupConfiguration | None:
    if lbc is None or lbc.default_target_group_configuration is None:
        return None
    name = lbc.default_target_group_configuration
    key = f"{lbc.meta.namespace}/{name}"
    found = snapshot.front_ends.target_group_configurations.get(key)
    if found is None:
        problems.append(
            _problem(
                Reason.TARGET_GROUP_CONFIGURATION_NOT_FOUND,
                f"LoadBalancerConfiguration {lbc.meta.key} names defaultTargetGroupConfiguration {name}, but no "
                f"TargetGroupConfiguration {key} exists (a default must be in the LoadBalancerConfiguration's "
                f"namespace): the controller fails the Gateway's reconcile",
                f"create TargetGroupConfiguration {key} without a targetReference, or fix the reference",
            )
        )
        return None
    if found.target_kind is not None:
        problems.append(
            _problem(
                Reason.INVALID_CONFIGURATION,
                f"TargetGroupConfiguration {key} is the defaultTargetGroupConfiguration of LoadBalancerConfiguration "
                f"{lbc.meta.key} but has a targetReference: the controller refuses it as a default and fails the "
                f"Gateway's reconcile",
                f"remove spec.targetReference from {key}, or point the default at another TargetGroupConfiguration",
            )
        )
        return None
    return found


def _merge_defaults(
    class_tgc: TargetGroupConfiguration | None, gw_tgc: TargetGroupConfiguration | None, mode: str
) -> tuple[TargetGroupConfiguration | None, str]:
    if class_tgc is None or gw_tgc is None:
        found = class_tgc or gw_tgc
        return found, f"TargetGroupConfiguration {found.meta.key}" if found is not None else ""
    high, low = (gw_tgc, class_tgc) if mode == PREFER_GATEWAY else (class_tgc, gw_tgc)
    merged = replace(high, default=merge_props(high.default, low.default))
    return merged, f"TargetGroupConfiguration {high.meta.key} (over {low.meta.key}, mergingMode {mode})"


def merge_props(high: TargetGroupProps, low: TargetGroupProps) -> TargetGroupProps:
    """The controller's shallow merge: each top-level field from ``high`` when set, else from ``low``;
    ``tags`` and ``targetGroupAttributes`` merge per key (``high`` wins)."""
    return TargetGroupProps(
        target_type=high.target_type if high.target_type is not None else low.target_type,
        protocol=high.protocol if high.protocol is not None else low.protocol,
        protocol_version=high.protocol_version if high.protocol_version is not None else low.protocol_version,
        ip_address_type=high.ip_address_type if high.ip_address_type is not None else low.ip_address_type,
        health_check=high.health_check if high.health_check is not None else low.health_check,
        attributes=_merge_maps(high.attributes, low.attributes),
        tags=_merge_maps(high.tags, low.tags),
        node_selector=high.node_selector if high.node_selector is not None else low.node_selector,
    )


def _merge_maps(high: Mapping[str, str] | None, low: Mapping[str, str] | None) -> Mapping[str, str] | None:
    if high is None and low is None:
        return None
    return {**(low or {}), **(high or {})}


def props_for_route(tgc: TargetGroupConfiguration, route: Route) -> tuple[TargetGroupProps, TargetGroupProps | None]:
    """A TGC's props for one route: the best-matching routeConfigurations entry merged over defaultConfiguration.
    Also returns the matched entry's own props (None when no entry matched)."""
    namespace, name = route.meta.namespace, route.meta.name
    matched: TargetGroupProps | None = None
    best = 0
    for entry in tgc.routes:
        kind_equal, ns_equal, name_equal = entry.kind == route.kind, entry.namespace == namespace, entry.name == name
        if kind_equal and ns_equal and name_equal:
            matched = entry.props
            break
        if entry.name:
            continue
        if kind_equal and ns_equal and best < 2:
            matched, best = entry.props, 2
        elif kind_equal and not entry.namespace and best < 1:
            matched, best = entry.props, 1
    if matched is None:
        return tgc.default, None
    return merge_props(matched, tgc.default), matched


def service_tgcs(snapshot: ClusterSnapshot, service: Service) -> list[TargetGroupConfiguration]:
    """The TGCs of the Service's namespace that target it, in the order the controller finds them (by name)."""
    return sorted(
        (
            tgc
            for tgc in snapshot.front_ends.target_group_configurations.in_namespace(service.meta.namespace).values()
            if tgc.target_kind == "Service" and tgc.target_name == service.meta.name
        ),
        key=lambda tgc: tgc.meta.name,
    )


def attached_listeners(route: Route, gateway: Gateway, section: str | None, port: int | None) -> list[Listener]:
    found = []
    for listener in gateway.listeners:
        if section is not None and listener.name != section:
            continue
        if port is not None and listener.port != port:
            continue
        kinds = listener.allowed_kinds or DEFAULT_KINDS.get(listener.protocol, ())
        if route.kind not in kinds:
            continue
        if listener.allowed_from == "Same" and route.meta.namespace != gateway.meta.namespace:
            continue
        if listener.allowed_from == "None":
            continue
        found.append(listener)  # "All", and "Selector" (namespace labels are not read: assumed to match)
    return found


def plan_route(route: Route, snapshot: ClusterSnapshot, controller: ControllerConfig) -> OwnerPlan | None:
    """The target groups a route's backends become on the AWS Gateways it attaches to; None when no parent is an
    AWS Gateway."""
    owner = ObjectRef(route.kind, route.meta.namespace, route.meta.name)
    backends: list[Backend] = []
    problems: list[Problem] = []
    ours = False
    for parent in route.parents:
        if parent.kind != "Gateway" or parent.group != GATEWAY_GROUP:
            continue
        gateway = snapshot.front_ends.gateway(parent.namespace, parent.name)
        if gateway is None:
            continue  # whose it would be is unknown: reported only when the route has an AWS parent (below)
        context = gateway_context(gateway, snapshot)
        if context is None:
            continue
        ours = True
        problems.extend(p for p in context.problems if p not in problems)
        if route.kind not in ROUTE_KINDS_BY_LB[context.lb]:
            problems.append(
                _problem(
                    Reason.ROUTE_NOT_ATTACHED,
                    f"{route.kind} {route.meta.key} names Gateway {gateway.meta.key}, an "
                    f"{context.lb.upper()} Gateway, which serves only {', '.join(ROUTE_KINDS_BY_LB[context.lb])}",
                    "attach the route to a Gateway of the other class, or change the route's kind",
                )
            )
            continue
        listeners = attached_listeners(route, gateway, parent.section_name, parent.port)
        if not listeners:
            problems.append(_not_attached(route, gateway, parent.section_name, parent.port))
            continue
        https = any(listener.protocol == HTTPS for listener in listeners)
        for backend in _backends(route, context, https, snapshot, controller, problems):
            if backend not in backends:
                backends.append(backend)
    if not ours:
        return None
    missing = [
        p
        for p in route.parents
        if p.kind == "Gateway" and p.group == GATEWAY_GROUP and snapshot.front_ends.gateway(p.namespace, p.name) is None
    ]
    for parent in missing:
        problems.append(
            _problem(
                Reason.GATEWAY_NOT_FOUND,
                f"{route.kind} {route.meta.key} names Gateway {parent.namespace}/{parent.name}, which does not exist",
                "fix the route's parentRefs, or create the Gateway",
            )
        )
    problems.extend(_status_problems(route))
    kept, too_many = bounded(owner, backends, CHECK)
    problems.extend(too_many)
    problems.extend(ipv6_node_problems(kept, snapshot, CHECK))
    return OwnerPlan(owner, kept, tuple(problems))


def _not_attached(route: Route, gateway: Gateway, section: str | None, port: int | None) -> Problem:
    listeners = "; ".join(
        f"{listener.name} ({listener.protocol}:{listener.port}, kinds "
        f"{', '.join(listener.allowed_kinds or DEFAULT_KINDS.get(listener.protocol, ())) or 'none'}, "
        f"namespaces {listener.allowed_from})"
        for listener in gateway.listeners[:8]
    ) + (f"; and {len(gateway.listeners) - 8} more" if len(gateway.listeners) > 8 else "")
    wanted = f" section {section}" if section else f" port {port}" if port else ""
    return _problem(
        Reason.ROUTE_NOT_ATTACHED,
        f"{route.kind} {route.meta.key} names Gateway {gateway.meta.key}{wanted}, but no listener accepts it "
        f"(listeners: {listeners or 'none'}): it gets no target group",
        "a listener accepts a route of its allowedRoutes.kinds (by default: HTTP → HTTPRoute, HTTPS → HTTPRoute "
        "and GRPCRoute, TLS → TLSRoute and TCPRoute, TCP → TCPRoute, UDP → UDPRoute) from its "
        "allowedRoutes.namespaces (by default only the Gateway's own namespace)",
    )


def _status_problems(route: Route) -> list[Problem]:
    """What the controller itself wrote on the route: a parent it did not accept, references it could not resolve."""
    found = []
    for status in route.status:
        if status.controller not in CONTROLLERS:
            continue
        for kind in ("Accepted", "ResolvedRefs"):
            condition = status.condition(kind)
            if condition is not None and condition.status == "False":
                found.append(
                    _problem(
                        Reason.ROUTE_NOT_ACCEPTED,
                        f"the controller reports {kind}=False ({condition.reason}) for {route.kind} {route.meta.key} "
                        f"on Gateway {status.parent.namespace}/{status.parent.name}: {condition.message[:300]}",
                        f"kubectl describe {route.kind.lower()} -n {route.meta.namespace} {route.meta.name}",
                    )
                )
    return found


def _backends(
    route: Route,
    context: GatewayContext,
    https: bool,
    snapshot: ClusterSnapshot,
    controller: ControllerConfig,
    problems: list[Problem],
) -> list[Backend]:
    owner = ObjectRef(route.kind, route.meta.namespace, route.meta.name)
    found: list[Backend] = []
    seen: set[tuple[str, str, int | None]] = set()
    for ref in route.backends:
        if ref.kind != "Service" or ref.group not in ("", "core"):
            continue  # a literal TargetGroupName, or a Gateway behind an NLB: not pods lbdoctor probes
        if (ref.namespace, ref.name, ref.port) in seen:
            continue
        seen.add((ref.namespace, ref.name, ref.port))
        where = f"{route.kind} {route.meta.key}"
        if ref.port is None:
            _add(
                problems,
                _problem(
                    Reason.INVALID_CONFIGURATION,
                    f"{where} has a backendRef to Service {ref.name} without a port: the controller "
                    f"refuses it ('Port is required')",
                    "set backendRefs[].port to one of the Service's ports",
                ),
            )
            continue
        service = snapshot.service(ref.namespace, ref.name)
        if service is None:
            _add(
                problems,
                _problem(
                    Reason.BACKEND_NOT_FOUND,
                    f"{where} routes to Service {ref.namespace}/{ref.name}, which does not exist",
                    "create the Service or fix the backendRef's name and namespace",
                ),
            )
            continue
        port = service.port_numbered(ref.port)
        if port is None:
            ports = ", ".join(str(p.port) for p in service.ports) or "none"
            _add(
                problems,
                _problem(
                    Reason.BACKEND_NOT_FOUND,
                    f"{where} routes to port {ref.port} of Service {service.meta.key}, which has no "
                    f"such port (ports: {ports})",
                    "point the backendRef at one of the Service's ports (its port, not its targetPort)",
                ),
            )
            continue
        layers, extra = _layers(route, service, context, snapshot)
        for problem in extra:
            _add(problems, problem)
        resolution = resolve_gateway(route, service, port.port, layers, context, https, controller)
        found.append(Backend(context.lb, owner, service, port, resolution, gateway=context.ref))
    return found


def _add(problems: list[Problem], problem: Problem) -> None:
    if problem not in problems:
        problems.append(problem)


def _layers(
    route: Route, service: Service, context: GatewayContext, snapshot: ClusterSnapshot
) -> tuple[list[Layer], list[Problem]]:
    """The TargetGroupProps layers for one backend, highest priority first, and what is surprising about them."""
    problems: list[Problem] = []
    layers: list[Layer] = []
    tgcs = service_tgcs(snapshot, service)
    if len(tgcs) > 1:
        problems.append(
            Problem(
                CHECK,
                Reason.CONFLICTING_TARGET_GROUP_CONFIGURATIONS,
                Status.WARN,
                f"{len(tgcs)} TargetGroupConfigurations target Service {service.meta.key} "
                f"({', '.join(t.meta.name for t in tgcs[:5])}{', …' if len(tgcs) > 5 else ''}): the controller uses "
                f"the first it lists, "
                f"{tgcs[0].meta.name}, and ignores the others",
                f"keep one TargetGroupConfiguration per Service; merge the others into {tgcs[0].meta.name}",
            )
        )
    if tgcs:
        props, entry = props_for_route(tgcs[0], route)
        layers.append(Layer(props, f"TargetGroupConfiguration {tgcs[0].meta.key}"))
        if entry is not None:
            _replaced(
                problems,
                entry.health_check,
                tgcs[0].default.health_check,
                f"the routeConfigurations entry for {route.kind} {route.meta.key} in TargetGroupConfiguration "
                f"{tgcs[0].meta.key}",
                "its defaultConfiguration",
            )
    if context.default_tgc is not None:
        props, _ = props_for_route(context.default_tgc, route)
        layers.append(Layer(props, context.default_source))
        if tgcs:
            _replaced(
                problems,
                layers[0].props.health_check,
                props.health_check,
                f"TargetGroupConfiguration {tgcs[0].meta.key}",
                f"the default of Gateway {context.gateway.meta.key} ({context.default_source})",
            )
    return layers, problems


def _replaced(
    problems: list[Problem], high: HealthCheckConfig | None, low: HealthCheckConfig | None, what: str, over: str
) -> None:
    """The shallow-merge surprise: a healthCheckConfig block replaces a lower one whose fields it does not repeat."""
    if high is None or low is None:
        return
    lost = [name for name in low.set_fields() if name not in high.set_fields()]
    if not lost:
        return
    problems.append(
        Problem(
            CHECK,
            Reason.HEALTH_CHECK_CONFIG_REPLACES_DEFAULT,
            Status.WARN,
            f"{what} sets healthCheckConfig, which replaces the whole healthCheckConfig of {over}: "
            f"{', '.join(lost)} set there are not inherited, and the controller's defaults apply instead",
            f"repeat {', '.join(lost)} in the healthCheckConfig of {what}, or remove its healthCheckConfig to "
            f"inherit the default's",
        )
    )


def _flatten(layers: list[Layer]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The merged props as text fields for the reader (CRD field names), where each came from, and the
    merged target-group attributes."""
    values: dict[str, str] = {}
    where: dict[str, str] = {}
    attributes: dict[str, str] = {}
    for layer in reversed(layers):  # lowest priority first, so higher layers overwrite
        props = layer.props
        for name, value in (
            ("targetType", props.target_type),
            ("protocol", props.protocol),
            ("protocolVersion", props.protocol_version),
        ):
            if value is not None:
                values[name], where[name] = value, layer.source
        if props.health_check is not None:  # a block replaces the whole block below it
            for name in [k for k in values if k.startswith("healthCheckConfig.")]:
                del values[name]
            check = props.health_check
            for name, raw in (
                ("healthCheckPath", check.path),
                ("healthCheckPort", check.port),
                ("healthCheckProtocol", check.protocol),
                ("healthCheckInterval", check.interval),
                ("healthCheckTimeout", check.timeout),
                ("healthyThresholdCount", check.healthy_threshold),
                ("unhealthyThresholdCount", check.unhealthy_threshold),
                ("matcher.httpCode", check.http_codes),
                ("matcher.grpcCode", check.grpc_codes),
            ):
                if raw is not None:
                    key = f"healthCheckConfig.{name}"
                    values[key], where[key] = str(raw), layer.source
        for name, value in (props.attributes or {}).items():
            attributes[name] = value
            where[f"targetGroupAttributes.{name}"] = layer.source
    return values, where, attributes


def resolve_gateway(
    route: Route,
    service: Service,
    service_port: int,
    layers: list[Layer],
    context: GatewayContext,
    https_listener: bool,
    controller: ControllerConfig,
) -> Resolution:
    """The health check of one route backend's target group, as the controller builds it."""
    values, where, attributes = _flatten(layers)
    reader = _Reader(CHECK, values, where, invalid_reason=Reason.INVALID_CONFIGURATION)
    lb = context.lb
    target_type = reader.choice("targetType", (INSTANCE, IP), controller.default_target_type, fold=False)
    if lb == ALB:
        inferred = HTTPS if route.kind == "TLSRoute" else HTTP
        protocol = reader.choice("protocol", (HTTP, HTTPS), inferred, fold=False)
    else:
        inferred = {"TCPRoute": TCP, "UDPRoute": "UDP", "TLSRoute": "TLS"}.get(route.kind, TCP)
        protocol = reader.choice("protocol", (TCP, "TLS", "UDP", "TCP_UDP"), inferred, fold=False)
    version = "HTTP1"
    if lb == ALB:
        chosen = reader.choice("protocolVersion", ("HTTP1", "HTTP2", "GRPC"), "", fold=False)
        if not https_listener:
            version = "HTTP1"  # only HTTPS listeners carry another protocol version
        elif chosen:
            version = chosen
        elif route.kind == "GRPCRoute":
            version = "GRPC"
        else:
            backend_port = service.port_numbered(service_port)
            h2c = backend_port is not None and backend_port.app_protocol == "kubernetes.io/h2c"
            version = "HTTP2" if h2c else "HTTP1"
    local = target_type == INSTANCE and service.external_traffic_policy == "Local" and lb == NLB
    default_hc = (HTTP if local else TCP) if lb == NLB else (protocol if protocol in (HTTP, HTTPS) else HTTP)
    hc_protocol = reader.choice("healthCheckConfig.healthCheckProtocol", (HTTP, HTTPS, TCP), default_hc, fold=False)
    if lb == ALB and hc_protocol == TCP:
        reader.invalid(
            "healthCheckConfig.healthCheckProtocol",
            "is TCP, which an ALB target group does not allow: AWS rejects the target group",
            "use HTTP or HTTPS for an ALB target group's health check",
        )
        hc_protocol = default_hc
    default_port: int | str = (
        service.health_check_node_port if local and service.health_check_node_port else ann.TRAFFIC_PORT
    )
    port = reader.port("healthCheckConfig.healthCheckPort", service, default_port, target_type)
    if isinstance(port, str) and port != ann.TRAFFIC_PORT and target_type == IP:
        named = service.port_named(port)
        if named is not None and isinstance(named.target_port, str):
            reader.invalid(
                "healthCheckConfig.healthCheckPort",
                f"names Service port {port!r} whose targetPort is itself the name {named.target_port!r}: the "
                f"controller refuses it ('cannot use named healthCheckPort for IP TargetType when service's "
                f"targetPort is a named port')",
                "set healthCheckPort to the container port number",
            )
    grpc = version == "GRPC"
    path: str | None = reader.path(
        "healthCheckConfig.healthCheckPath", GRPC_DEFAULT_PATH if grpc else ("/healthz" if local else "/")
    )
    if grpc:
        codes = reader.codes("healthCheckConfig.matcher.grpcCode", ann.GRPC_CODES_RANGE, GRPC_DEFAULT_CODES)
    else:
        bounds = ann.ALB_CODES_RANGE if lb == ALB else ann.NLB_CODES_RANGE
        codes = reader.codes("healthCheckConfig.matcher.httpCode", bounds, DEFAULT_HTTP_CODES)
    interval = reader.integer(
        "healthCheckConfig.healthCheckInterval", ann.INTERVAL_RANGE, LOCAL_INTERVAL if local else DEFAULT_INTERVAL
    )
    timeout = reader.integer(
        "healthCheckConfig.healthCheckTimeout", ann.TIMEOUT_RANGE, LOCAL_TIMEOUT if local else DEFAULT_TIMEOUT
    )
    healthy = reader.integer(
        "healthCheckConfig.healthyThresholdCount", ann.THRESHOLD_RANGE, LOCAL_THRESHOLD if local else DEFAULT_THRESHOLD
    )
    unhealthy = reader.integer(
        "healthCheckConfig.unhealthyThresholdCount",
        ann.THRESHOLD_RANGE,
        LOCAL_THRESHOLD if local else DEFAULT_THRESHOLD,
    )
    if interval < timeout:
        reader.invalid(
            "healthCheckConfig.healthCheckInterval",
            f"is shorter than the health check timeout ({timeout} s); AWS rejects the target group",
            "raise healthCheckInterval above healthCheckTimeout",
            reason=Reason.INTERVAL_SHORTER_THAN_TIMEOUT,
        )
    success = codes if hc_protocol != TCP else None
    if hc_protocol == TCP:
        path = None
        if protocol == "UDP":
            reader.problems.append(
                Problem(
                    CHECK,
                    Reason.UDP_HEALTH_CHECK_IS_TCP,
                    Status.WARN,
                    f"{route.kind} {route.meta.key} sends UDP to Service {service.meta.key} port {service_port}; "
                    f"its target group's health check is TCP on the same port, so the pods must also accept TCP "
                    f"connections there",
                    "listen on TCP on that port too, or set healthCheckConfig (healthCheckPort, healthCheckProtocol) "
                    "to a TCP or HTTP endpoint the pods serve",
                )
            )
    _instance_needs_node_port(reader, service, target_type)
    ip_type = IPV6 if service.ipv6 else IPV4
    if ip_type == IPV6 and context.lb_ip_address_type not in DUALSTACK_TYPES:
        reader.problems.append(
            Problem(
                CHECK,
                Reason.IPV6_REQUIRES_DUALSTACK,
                Status.FAIL,
                f"Service {service.meta.key} has ipFamilies {', '.join(service.ip_families)}, so its target group is "
                f"IPv6, but Gateway {context.gateway.meta.key}'s load balancer is {context.lb_ip_address_type}: the "
                f"controller refuses it ('unsupported IPv6 configuration, lb not dual-stack')",
                "set ipAddressType: dualstack in the Gateway's LoadBalancerConfiguration, or make the Service IPv4",
            )
        )
    delay = attributes.get(ann.DEREGISTRATION_DELAY)
    low, high = ann.DEREGISTRATION_DELAY_RANGE
    if delay is not None and not (delay.isascii() and delay.isdigit() and low <= int(delay) <= high):
        reader.problems.append(
            Problem(
                CHECK,
                Reason.INVALID_TARGET_GROUP_ATTRIBUTES,
                Status.FAIL,
                f"targetGroupAttributes {ann.DEREGISTRATION_DELAY}={delay!r} from "
                f"{where.get('targetGroupAttributes.' + ann.DEREGISTRATION_DELAY, 'a TargetGroupConfiguration')} is "
                f"outside the {low}-{high} seconds AWS accepts",
                f"set {ann.DEREGISTRATION_DELAY} to a number of seconds between {low} and {high}",
            )
        )
        del attributes[ann.DEREGISTRATION_DELAY]
    spec = HealthCheckSpec(
        lb=lb,
        target_type=target_type,
        protocol=hc_protocol,
        port=port,
        path=path,
        success_codes=success,
        interval=interval,
        timeout=timeout,
        healthy_threshold=healthy,
        unhealthy_threshold=unhealthy,
        protocol_version=version,
        node_health_check=local and port == service.health_check_node_port,
        ip_address_type=ip_type,
    )
    return Resolution(spec, tuple(reader.problems), tuple(sorted(attributes.items())))


def _problem(reason: Reason, message: str, remedy: str, status: Status = Status.FAIL) -> Problem:
    return Problem(CHECK, reason, status, message, remedy)
