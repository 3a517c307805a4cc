"""Derive the health check a target group really has, from annotations and the controller's defaults.

Mirrors the AWS Load Balancer Controller (``pkg/ingress`` and ``pkg/service`` model builders; the defaults
are written down in docs/health-check-defaults.md §1-§5, the front ends in docs/front-ends.md). An invalid
annotation makes the controller fail to build
its model; lbdoctor reports it and keeps probing with the default for that one field, so the rest
of the runbook still runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exporter.lb import annotations as ann
from exporter.lb.successcodes import SuccessCodes, SuccessCodesError, parse_success_codes
from exporter.model.gateway import IngressClassParams
from exporter.model.objects import Ingress, Service
from exporter.model.results import Check, Reason, Status

if TYPE_CHECKING:
    from exporter.settings import Settings

HTTP, HTTPS, TCP = "HTTP", "HTTPS", "TCP"
IP, INSTANCE = "ip", "instance"
ALB, NLB, TGB = "alb", "nlb", "tgb"
IPV4, IPV6 = "ipv4", "ipv6"
# Who reconciles a target group: the AWS Load Balancer Controller in the cluster, or EKS Auto Mode's, run by AWS.
LBC, AUTO_MODE = "lbc", "eks-auto-mode"
DUALSTACK_TYPES = ("dualstack", "dualstack-without-public-ipv4")
# gRPC target groups (protocol version GRPC): the ALB's default health-check path and success code (UNIMPLEMENTED)
GRPC_DEFAULT_PATH = "/AWS.ALB/healthcheck"
GRPC_DEFAULT_CODES = "12"


@dataclass(frozen=True, slots=True)
class HealthCheckSpec:
    lb: str  # alb | nlb | tgb
    target_type: str  # ip | instance
    protocol: str  # HTTP | HTTPS | TCP
    port: int | str  # "traffic-port", a number, or the name of a Service port
    path: str | None
    success_codes: SuccessCodes | None
    interval: int
    timeout: int
    healthy_threshold: int
    unhealthy_threshold: int
    protocol_version: str = "HTTP1"  # HTTP1 | HTTP2 | GRPC (ALB only)
    # instance targets + externalTrafficPolicy Local (NLB): the LB asks kube-proxy's
    # healthCheckNodePort on the node, not the pod.
    node_health_check: bool = False
    ip_address_type: str = IPV4  # the target group's: ipv6 targets are checked at their IPv6 address


@dataclass(frozen=True, slots=True)
class Problem:
    check: Check
    reason: Reason
    status: Status
    message: str
    remedy: str
    annotation: str | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    spec: HealthCheckSpec
    problems: tuple[Problem, ...] = ()
    # target-group attributes as configured (annotations or TargetGroupConfiguration), e.g. the deregistration delay
    attributes: tuple[tuple[str, str], ...] = ()

    def attribute(self, key: str) -> str | None:
        return next((value for name, value in self.attributes if name == key), None)

    @property
    def deregistration_delay(self) -> int:
        """Seconds a deregistered target stays draining (AWS's default 300 s unless an attribute says otherwise)."""
        value = self.attribute(ann.DEREGISTRATION_DELAY)
        return int(value) if value is not None and value.isdigit() else ann.DEREGISTRATION_DELAY_DEFAULT


@dataclass(frozen=True)
class ControllerConfig:
    """The AWS Load Balancer Controller flags that change how objects become target groups."""

    default_target_type: str = INSTANCE  # --default-target-type
    load_balancer_class: str = "service.k8s.aws/nlb"  # --load-balancer-class
    ingress_controller: str = "ingress.k8s.aws/alb"  # IngressClass spec.controller
    # EKS Auto Mode's built-in load balancing (IngressClass eks.amazonaws.com/alb, loadBalancerClass
    # eks.amazonaws.com/nlb): it defaults to ip targets.
    auto_mode_target_type: str = ann.AUTO_MODE_TARGET_TYPE

    @classmethod
    def from_settings(cls, settings: Settings) -> ControllerConfig:
        """The one place the daemon's and ``diagnose``'s settings become the controller's configuration."""
        return cls(
            default_target_type=settings.default_target_type,
            load_balancer_class=settings.load_balancer_class,
            ingress_controller=settings.ingress_controller,
        )


@dataclass
class _Reader:
    """Reads annotations for one object, collecting problems instead of raising."""

    check: Check
    values: Mapping[str, str]
    where: Mapping[str, str]  # annotation -> "Service ns/name" or "Ingress ns/name"
    problems: list[Problem] = field(default_factory=list)
    invalid_reason: Reason = Reason.INVALID_ANNOTATION  # a value the controller or AWS refuses

    def has(self, key: str) -> bool:
        return key in self.values

    def raw(self, key: str) -> str | None:
        value = self.values.get(key)
        return None if value is None else value.strip()

    def invalid(self, key: str, message: str, remedy: str, reason: Reason | None = None) -> None:
        self.problems.append(
            Problem(
                check=self.check,
                reason=reason or self.invalid_reason,
                status=Status.FAIL,
                message=f"{key}={ann.quoted(self.values.get(key, ''))} on {self.where.get(key, 'the object')} "
                f"{message}",
                remedy=remedy,
                annotation=key,
            )
        )

    def warn(self, key: str, reason: Reason, message: str, remedy: str) -> None:
        self.problems.append(
            Problem(check=self.check, reason=reason, status=Status.WARN, message=message, remedy=remedy, annotation=key)
        )

    def choice(self, key: str, allowed: tuple[str, ...], default: str, *, fold: bool = True) -> str:
        value = self.raw(key)
        if value is None:
            return default
        candidate = value.upper() if fold else value
        for option in allowed:
            if candidate == (option.upper() if fold else option):
                return option
        self.invalid(
            key,
            f"is not one of {', '.join(allowed)}; the controller rejects it (FailedBuildModel)",
            f"set {key} to one of {', '.join(allowed)}",
        )
        return default

    def integer(self, key: str, bounds: tuple[int, int], default: int) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if not (value.isascii() and value.isdigit()):
            self.invalid(key, "is not a whole number", f"set {key} to a number between {bounds[0]} and {bounds[1]}")
            return default
        number = int(value)
        if not bounds[0] <= number <= bounds[1]:
            self.invalid(
                key,
                f"is outside {bounds[0]}-{bounds[1]}, the range AWS accepts",
                f"set {key} to a number between {bounds[0]} and {bounds[1]}",
            )
            return default
        return number

    def codes(self, key: str, bounds: tuple[int, int], default: str) -> SuccessCodes:
        value = self.raw(key)
        if value is not None:
            try:
                return parse_success_codes(value, bounds)
            except SuccessCodesError as err:
                self.invalid(
                    key,
                    str(err),
                    f"use codes between {bounds[0]} and {bounds[1]}, as 200, 200,202 or 200-399",
                    reason=Reason.INVALID_SUCCESS_CODES,
                )
        return parse_success_codes(default, bounds)

    def port(self, key: str, service: Service | None, default: int | str, target_type: str) -> int | str:
        value = self.raw(key)
        if value is None:
            return default
        if value == ann.TRAFFIC_PORT:
            return value
        if value.isascii() and value.isdigit():
            number = int(value)
            if not 1 <= number <= 65535:
                self.invalid(key, "is not a port between 1 and 65535", f"set {key} to traffic-port or a valid port")
                return default
            allowed = instance_ports(service) if target_type == INSTANCE and service is not None else None
            # No NodePort at all is InstanceTargetNeedsNodePort's finding; no probe goes there either way.
            if service is not None and allowed and number not in allowed:
                found = ", ".join(str(port) for port in sorted(allowed))
                self.invalid(
                    key,
                    f"is not a NodePort (or the healthCheckNodePort) of Service {service.meta.key} (those: {found}); "
                    f"with instance targets the load balancer checks that port on every node, so lbdoctor does "
                    f"not probe it",
                    f"set {key} to traffic-port, or to the NodePort of the Service port that serves the health check",
                    reason=Reason.HEALTH_CHECK_PORT_NOT_IN_SERVICE,
                )
                return default
            return number
        if service is not None and service.port_named(value) is None:
            names = ", ".join(p.name for p in service.ports if p.name) or "none"
            self.invalid(
                key,
                f"names no port of Service {service.meta.key} (its named ports: {names})",
                f"set {key} to traffic-port, a number, or one of the Service's port names",
                reason=Reason.HEALTH_CHECK_PORT_NOT_IN_SERVICE,
            )
            return default
        return value

    def attributes(self, key: str) -> tuple[tuple[str, str], ...]:
        """A ``k=v,k2=v2`` attribute map; a malformed entry or an out-of-range deregistration delay is reported."""
        value = self.raw(key)
        if not value:
            return ()
        found: dict[str, str] = {}
        for item in value.split(","):
            name, sep, setting = item.partition("=")
            if not sep or not name.strip():
                self.invalid(
                    key,
                    f"has {item.strip()!r}, which is not key=value",
                    f"write {key} as key=value pairs separated by commas",
                    reason=Reason.INVALID_TARGET_GROUP_ATTRIBUTES,
                )
                return tuple(found.items())
            found[name.strip()] = setting.strip()
        delay = found.get(ann.DEREGISTRATION_DELAY)
        low, high = ann.DEREGISTRATION_DELAY_RANGE
        if delay is not None and not (delay.isascii() and delay.isdigit() and low <= int(delay) <= high):
            self.invalid(
                key,
                f"sets {ann.DEREGISTRATION_DELAY}={delay!r}, outside the {low}-{high} seconds AWS accepts",
                f"set {ann.DEREGISTRATION_DELAY} to a number of seconds between {low} and {high}",
                reason=Reason.INVALID_TARGET_GROUP_ATTRIBUTES,
            )
            del found[ann.DEREGISTRATION_DELAY]
        return tuple(found.items())

    def path(self, key: str, default: str) -> str:
        value = self.raw(key)
        if value is None:
            return default
        problem = ann.health_check_path_problem(value)
        if problem is not None:
            self.invalid(
                key,
                f"{problem}; the controller's target group would be rejected",
                f"set {key} to a path such as /healthz (percent-encode other characters)",
            )
            return default
        return value


def instance_ports(service: Service) -> frozenset[int]:
    """The ports an instance target's health check may land on: the Service's NodePorts and its
    healthCheckNodePort. Anything else on the node (the kubelet's 10250, say) is not the Service's."""
    ports = {port.node_port for port in service.ports if port.node_port}
    if service.health_check_node_port:
        ports.add(service.health_check_node_port)
    return frozenset(ports)


def _misspellings(reader: _Reader, family_prefix: str) -> None:
    for wrong, right in ann.MISSPELLINGS.items():
        if wrong.startswith(family_prefix) and reader.has(wrong):
            reader.warn(
                wrong,
                Reason.INVALID_ANNOTATION,
                f"{wrong} on {reader.where.get(wrong, 'the object')} is not an annotation the controller reads; "
                f"it is ignored",
                f"rename it to {right}",
            )


def is_auto_mode_service(service: Service) -> bool:
    return service.load_balancer_class == ann.AUTO_MODE_NLB_CLASS


def nlb_target_type(service: Service, controller: ControllerConfig) -> str:
    annotations = service.meta.annotations
    auto_mode = is_auto_mode_service(service)
    if annotations.get(ann.NLB_TYPE, "").strip() == "nlb-ip" and not auto_mode:
        return IP
    value = annotations.get(ann.NLB_TARGET_TYPE, "").strip().lower()
    if value in (IP, INSTANCE):
        return value
    return controller.auto_mode_target_type if auto_mode else controller.default_target_type


def _auto_mode_unsupported(reader: _Reader, annotations: Mapping[str, str], what: str) -> None:
    for key in sorted(annotations):
        instead = ann.AUTO_MODE_UNSUPPORTED.get(key)
        if instead is not None:
            reader.warn(
                key,
                Reason.NOT_SUPPORTED_BY_AUTO_MODE,
                f"{what} is load-balanced by EKS Auto Mode, which does not support {key}: it is ignored",
                instead,
            )


def _ip_address_type(reader: _Reader, service: Service | None, key: str, lb_type: str, owner: str) -> str:
    """The target group's IP address type, as the controller derives it: IPv6 when the Service has an IPv6
    family (even as its second), which needs a dual-stack load balancer."""
    if service is None or not service.ipv6:
        return IPV4
    if lb_type not in DUALSTACK_TYPES:
        reader.problems.append(
            Problem(
                check=reader.check,
                reason=Reason.IPV6_REQUIRES_DUALSTACK,
                status=Status.FAIL,
                message=f"Service {service.meta.key} has ipFamilies {', '.join(service.ip_families)}, so its target "
                f"group is IPv6, but the load balancer of {owner} is {lb_type}: the controller refuses it "
                f"('unsupported IPv6 configuration, lb not dual-stack', FailedBuildModel)",
                remedy=f"set {key}: dualstack, or make the Service single-stack IPv4 (ipFamilies: [IPv4])",
                annotation=key,
            )
        )
    return IPV6


def resolve_nlb(service: Service, controller: ControllerConfig) -> Resolution:
    """The health check of the NLB target groups the controller (or EKS Auto Mode) builds for a Service."""
    where = dict.fromkeys(service.meta.annotations, f"Service {service.meta.key}")
    reader = _Reader(Check.SERVICE_ANNOTATIONS, service.meta.annotations, where)
    _misspellings(reader, ann.NLB_PREFIX)
    auto_mode = is_auto_mode_service(service)
    if auto_mode:
        _auto_mode_unsupported(reader, service.meta.annotations, f"Service {service.meta.key}")
    if reader.has(ann.NLB_TARGET_TYPE):
        reader.choice(ann.NLB_TARGET_TYPE, (IP, INSTANCE), controller.default_target_type)
    target_type = nlb_target_type(service, controller)
    # The Local column of docs/health-check-defaults.md §3: instance targets with externalTrafficPolicy Local are
    # checked through kube-proxy's healthCheckNodePort.
    local_instance = (
        target_type == INSTANCE and service.external_traffic_policy == "Local" and service.type == "LoadBalancer"
    )
    protocol = reader.choice(ann.NLB_HC_PROTOCOL, (TCP, HTTP, HTTPS), HTTP if local_instance else TCP)
    default_port: int | str = (
        service.health_check_node_port if local_instance and service.health_check_node_port else ann.TRAFFIC_PORT
    )
    port = reader.port(ann.NLB_HC_PORT, service, default_port, target_type)
    path: str | None = reader.path(ann.NLB_HC_PATH, "/healthz" if local_instance else "/")
    interval = reader.integer(ann.NLB_HC_INTERVAL, ann.INTERVAL_RANGE, 10)
    timeout = reader.integer(ann.NLB_HC_TIMEOUT, ann.TIMEOUT_RANGE, 6 if local_instance else 10)
    healthy = reader.integer(ann.NLB_HEALTHY_THRESHOLD, ann.THRESHOLD_RANGE, 2 if local_instance else 3)
    unhealthy = reader.integer(ann.NLB_UNHEALTHY_THRESHOLD, ann.THRESHOLD_RANGE, 2 if local_instance else 3)
    codes: SuccessCodes | None = reader.codes(ann.NLB_SUCCESS_CODES, ann.NLB_CODES_RANGE, "200-399")
    if protocol == TCP:
        if reader.has(ann.NLB_HC_PATH):
            reader.warn(
                ann.NLB_HC_PATH,
                Reason.PATH_IGNORED_FOR_TCP_HEALTH_CHECK,
                f"Service {service.meta.key} sets {ann.NLB_HC_PATH}={ann.quoted(reader.raw(ann.NLB_HC_PATH) or '')} "
                f"but its health check protocol is TCP, so the NLB only opens a connection and never requests the path",
                f"add {ann.NLB_HC_PROTOCOL}: http (or https) to check the path, or remove {ann.NLB_HC_PATH}",
            )
        path, codes = None, None
    if interval < timeout:
        reader.invalid(
            ann.NLB_HC_INTERVAL,
            f"is shorter than the health check timeout ({timeout} s); AWS answers 'Health check interval must "
            f"be greater than the timeout'",
            f"raise {ann.NLB_HC_INTERVAL} above the timeout or lower {ann.NLB_HC_TIMEOUT}",
            reason=Reason.INTERVAL_SHORTER_THAN_TIMEOUT,
        )
    _instance_needs_node_port(reader, service, target_type)
    lb_type = reader.choice(ann.NLB_IP_ADDRESS_TYPE, (IPV4, "dualstack"), IPV4, fold=False)
    ip_type = _ip_address_type(reader, service, ann.NLB_IP_ADDRESS_TYPE, lb_type, f"Service {service.meta.key}")
    attributes = reader.attributes(ann.NLB_TARGET_GROUP_ATTRIBUTES)
    spec = HealthCheckSpec(
        lb=NLB,
        target_type=target_type,
        protocol=protocol,
        port=port,
        path=path,
        success_codes=codes,
        interval=interval,
        timeout=timeout,
        healthy_threshold=healthy,
        unhealthy_threshold=unhealthy,
        node_health_check=local_instance and port == service.health_check_node_port,
        ip_address_type=ip_type,
    )
    return Resolution(spec, tuple(reader.problems), attributes)


def resolve_alb(
    ingress: Ingress,
    service: Service | None,
    controller: ControllerConfig,
    *,
    auto_mode: bool = False,
    class_params: IngressClassParams | None = None,
) -> Resolution:
    """The health check of the ALB target group for one Ingress backend.

    The controller merges the backend Service's ``alb.ingress.kubernetes.io/*`` annotations over the
    Ingress's: a value on the Service wins. The IngressClass's IngressClassParams win over both for the
    target type and the load balancer's IP address type. EKS Auto Mode reads the same annotations, with ip
    targets by default.
    """
    merged: dict[str, str] = {}
    where: dict[str, str] = {}
    for key, value in ingress.meta.annotations.items():
        if key.startswith(ann.ALB_PREFIX):
            merged[key], where[key] = value, f"Ingress {ingress.meta.key}"
    if service is not None:
        for key, value in service.meta.annotations.items():
            if key.startswith(ann.ALB_PREFIX):
                merged[key], where[key] = value, f"Service {service.meta.key}"
    reader = _Reader(Check.INGRESS_ANNOTATIONS, merged, where)
    _misspellings(reader, ann.ALB_PREFIX)
    if auto_mode:
        _auto_mode_unsupported(reader, ingress.meta.annotations, f"Ingress {ingress.meta.key}")
    default_type = controller.auto_mode_target_type if auto_mode else controller.default_target_type
    target_type = reader.choice(ann.ALB_TARGET_TYPE, (INSTANCE, IP), default_type, fold=False)
    if class_params is not None and class_params.target_type in (INSTANCE, IP):
        target_type = class_params.target_type
    backend_protocol = reader.choice(ann.ALB_BACKEND_PROTOCOL, (HTTP, HTTPS), HTTP)
    version = reader.choice(ann.ALB_BACKEND_PROTOCOL_VERSION, ("HTTP1", "HTTP2", "GRPC"), "HTTP1")
    protocol = reader.choice(ann.ALB_HC_PROTOCOL, (HTTP, HTTPS), backend_protocol)
    port = reader.port(ann.ALB_HC_PORT, service, ann.TRAFFIC_PORT, target_type)
    grpc = version == "GRPC"
    path = reader.path(ann.ALB_HC_PATH, GRPC_DEFAULT_PATH if grpc else "/")
    interval = reader.integer(ann.ALB_HC_INTERVAL, ann.INTERVAL_RANGE, 15)
    timeout = reader.integer(ann.ALB_HC_TIMEOUT, ann.TIMEOUT_RANGE, 5)
    healthy = reader.integer(ann.ALB_HEALTHY_THRESHOLD, ann.THRESHOLD_RANGE, 2)
    unhealthy = reader.integer(ann.ALB_UNHEALTHY_THRESHOLD, ann.THRESHOLD_RANGE, 2)
    codes = reader.codes(
        ann.ALB_SUCCESS_CODES,
        ann.GRPC_CODES_RANGE if grpc else ann.ALB_CODES_RANGE,
        GRPC_DEFAULT_CODES if grpc else "200",
    )
    if interval < timeout:
        reader.invalid(
            ann.ALB_HC_INTERVAL,
            f"is shorter than the health check timeout ({timeout} s); AWS rejects the target group",
            f"raise {ann.ALB_HC_INTERVAL} above the timeout or lower {ann.ALB_HC_TIMEOUT}",
            reason=Reason.INTERVAL_SHORTER_THAN_TIMEOUT,
        )
    if service is not None:
        _nlb_family_on_alb_backend(reader, service)
        if isinstance(port, str) and port != ann.TRAFFIC_PORT and target_type == IP:
            named = service.port_named(port)
            if named is not None and isinstance(named.target_port, str):
                reader.invalid(
                    ann.ALB_HC_PORT,
                    f"names Service port {port!r} whose targetPort is itself the name {named.target_port!r}; "
                    f"with ip targets the controller needs a numeric targetPort here",
                    f"set {ann.ALB_HC_PORT} to the container port number",
                )
        _instance_needs_node_port(reader, service, target_type)
    lb_reader = _Reader(
        Check.INGRESS_ANNOTATIONS,
        {k: v for k, v in ingress.meta.annotations.items() if k == ann.ALB_IP_ADDRESS_TYPE},
        {ann.ALB_IP_ADDRESS_TYPE: f"Ingress {ingress.meta.key}"},
        reader.problems,
    )
    lb_type = lb_reader.choice(ann.ALB_IP_ADDRESS_TYPE, (IPV4, *DUALSTACK_TYPES), IPV4, fold=False)
    if class_params is not None and class_params.ip_address_type:
        lb_type = class_params.ip_address_type
    ip_type = _ip_address_type(reader, service, ann.ALB_IP_ADDRESS_TYPE, lb_type, f"Ingress {ingress.meta.key}")
    attributes = reader.attributes(ann.ALB_TARGET_GROUP_ATTRIBUTES)
    spec = HealthCheckSpec(
        lb=ALB,
        target_type=target_type,
        protocol=protocol,
        port=port,
        path=path,
        success_codes=codes,
        interval=interval,
        timeout=timeout,
        healthy_threshold=healthy,
        unhealthy_threshold=unhealthy,
        protocol_version=version,
        ip_address_type=ip_type,
    )
    return Resolution(spec, tuple(reader.problems), attributes)


def resolve_unmanaged(target_type: str | None) -> HealthCheckSpec:
    """A TargetGroupBinding to a target group the controller did not create: its settings live only in
    AWS. Until the cluster role reads them, probe what every target group checks at least: the port."""
    return HealthCheckSpec(
        lb=TGB,
        target_type=target_type or IP,
        protocol=TCP,
        port=ann.TRAFFIC_PORT,
        path=None,
        success_codes=None,
        interval=30,
        timeout=10,
        healthy_threshold=5,
        unhealthy_threshold=2,
    )


def _nlb_family_on_alb_backend(reader: _Reader, service: Service) -> None:
    for key in sorted(service.meta.annotations):
        if key.startswith(ann.NLB_PREFIX + "healthcheck-"):
            reader.warn(
                key,
                Reason.INVALID_ANNOTATION,
                f"Service {service.meta.key} is an ALB backend and sets {key}, which only NLB target groups read; "
                f"the ALB ignores it",
                f"use the {ann.ALB_PREFIX}healthcheck-* annotations on the Ingress or the Service",
            )


def _instance_needs_node_port(reader: _Reader, service: Service, target_type: str) -> None:
    if target_type != INSTANCE:
        return
    if service.type == "ClusterIP" or (service.type == "LoadBalancer" and not service.allocate_node_ports):
        what = "is a ClusterIP Service" if service.type == "ClusterIP" else "sets allocateLoadBalancerNodePorts: false"
        reader.problems.append(
            Problem(
                check=reader.check,
                reason=Reason.INSTANCE_TARGET_NEEDS_NODE_PORT,
                status=Status.FAIL,
                message=f"Service {service.meta.key} uses instance targets but {what}, so there is no NodePort "
                f"for the load balancer to send traffic or health checks to",
                remedy="make the Service type NodePort (or LoadBalancer with node ports), or use ip targets",
            )
        )
