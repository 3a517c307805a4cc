"""Derive the health check a target group really has, from annotations and the controller's defaults.

Mirrors the AWS Load Balancer Controller (``pkg/ingress`` and ``pkg/service`` model builders; see
docs/health-check-defaults.md §1-§5). An invalid annotation makes the controller fail to build
its model; lbdoctor reports it and keeps probing with the default for that one field, so the rest
of the runbook still runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exporter.lb import annotations as ann
from exporter.lb.successcodes import SuccessCodes, SuccessCodesError, parse_success_codes
from exporter.model.objects import Ingress, Service
from exporter.model.results import Check, Reason, Status

if TYPE_CHECKING:
    from exporter.settings import Settings

HTTP, HTTPS, TCP = "HTTP", "HTTPS", "TCP"
IP, INSTANCE = "ip", "instance"
ALB, NLB, TGB = "alb", "nlb", "tgb"


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


@dataclass(frozen=True)
class ControllerConfig:
    """The AWS Load Balancer Controller flags that change how objects become target groups."""

    default_target_type: str = INSTANCE  # --default-target-type
    load_balancer_class: str = "service.k8s.aws/nlb"  # --load-balancer-class
    ingress_controller: str = "ingress.k8s.aws/alb"  # IngressClass spec.controller

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

    def has(self, key: str) -> bool:
        return key in self.values

    def raw(self, key: str) -> str | None:
        value = self.values.get(key)
        return None if value is None else value.strip()

    def invalid(self, key: str, message: str, remedy: str, reason: Reason = Reason.INVALID_ANNOTATION) -> None:
        self.problems.append(
            Problem(
                check=self.check,
                reason=reason,
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


def nlb_target_type(service: Service, controller: ControllerConfig) -> str:
    annotations = service.meta.annotations
    if annotations.get(ann.NLB_TYPE, "").strip() == "nlb-ip":
        return IP
    value = annotations.get(ann.NLB_TARGET_TYPE, "").strip().lower()
    if value in (IP, INSTANCE):
        return value
    return controller.default_target_type


def resolve_nlb(service: Service, controller: ControllerConfig) -> Resolution:
    """The health check of the NLB target groups the controller builds for a Service."""
    where = dict.fromkeys(service.meta.annotations, f"Service {service.meta.key}")
    reader = _Reader(Check.SERVICE_ANNOTATIONS, service.meta.annotations, where)
    _misspellings(reader, ann.NLB_PREFIX)
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
    )
    return Resolution(spec, tuple(reader.problems))


def resolve_alb(ingress: Ingress, service: Service | None, controller: ControllerConfig) -> Resolution:
    """The health check of the ALB target group for one Ingress backend.

    The controller merges the backend Service's ``alb.ingress.kubernetes.io/*`` annotations over the
    Ingress's: a value on the Service wins.
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
    target_type = reader.choice(ann.ALB_TARGET_TYPE, (INSTANCE, IP), controller.default_target_type, fold=False)
    backend_protocol = reader.choice(ann.ALB_BACKEND_PROTOCOL, (HTTP, HTTPS), HTTP)
    version = reader.choice(ann.ALB_BACKEND_PROTOCOL_VERSION, ("HTTP1", "HTTP2", "GRPC"), "HTTP1")
    protocol = reader.choice(ann.ALB_HC_PROTOCOL, (HTTP, HTTPS), backend_protocol)
    port = reader.port(ann.ALB_HC_PORT, service, ann.TRAFFIC_PORT, target_type)
    grpc = version == "GRPC"
    path = reader.path(ann.ALB_HC_PATH, "/AWS.ALB/healthcheck" if grpc else "/")
    interval = reader.integer(ann.ALB_HC_INTERVAL, ann.INTERVAL_RANGE, 15)
    timeout = reader.integer(ann.ALB_HC_TIMEOUT, ann.TIMEOUT_RANGE, 5)
    healthy = reader.integer(ann.ALB_HEALTHY_THRESHOLD, ann.THRESHOLD_RANGE, 2)
    unhealthy = reader.integer(ann.ALB_UNHEALTHY_THRESHOLD, ann.THRESHOLD_RANGE, 2)
    codes = reader.codes(
        ann.ALB_SUCCESS_CODES, ann.GRPC_CODES_RANGE if grpc else ann.ALB_CODES_RANGE, "12" if grpc else "200"
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
    )
    return Resolution(spec, tuple(reader.problems))


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
