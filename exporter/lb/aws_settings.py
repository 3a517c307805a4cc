"""Real target-group health checks, as the cluster role learned them from AWS, for the node agents.

The node agents derive each health check from annotations and the controller's defaults; AWS has
the truth (a TargetGroupBinding to a hand-made target group has no annotations at all; someone may
have edited a target group in the console). The cluster role publishes what AWS says as a small JSON
document (schema ``lbdoctor.targetgroups/v1``, see docs/aws.md); a node agent reads it and
``apply()`` swaps the real settings into its plan before it derives probe targets. ``differences()``
is the same comparison seen from the other side: the drift the cluster role reports.

Pure and free of AWS imports: the node role uses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from exporter.lb import annotations as ann
from exporter.lb.healthcheck import HTTP, HTTPS, INSTANCE, TCP, HealthCheckSpec, Resolution
from exporter.lb.plan import Backend, LbPlan
from exporter.lb.successcodes import SuccessCodes, SuccessCodesError, parse_success_codes
from exporter.model.objects import Service, ServicePort
from exporter.model.results import ObjectRef

SCHEMA = "lbdoctor.targetgroups/v1"
_CODE_BOUNDS = (0, 599)  # AWS validates the matcher; lbdoctor only needs to read it


class DocumentError(ValueError):
    """The published document is not one lbdoctor can read; the message is one line."""


@dataclass(frozen=True, slots=True)
class RealHealthCheck:
    """One target group's health check as AWS has it, and the backend (owner, Service port) it serves."""

    arn: str
    target_group: str
    owner: ObjectRef
    service: str
    service_port: int | str | None
    target_type: str
    protocol: str  # HTTP | HTTPS | TCP (as AWS spells it)
    port: int | str  # "traffic-port" or a number
    path: str | None
    success_codes: str | None  # the matcher: HttpCode, or GrpcCode for gRPC target groups
    protocol_version: str | None
    interval: int
    timeout: int
    healthy_threshold: int
    unhealthy_threshold: int


def to_document(checks: Iterable[RealHealthCheck], *, cluster: str, generated_at: str) -> dict[str, Any]:
    rows = []
    for check in sorted(checks, key=lambda c: c.arn):
        row = asdict(check)
        row["owner"] = {"kind": check.owner.kind, "namespace": check.owner.namespace, "name": check.owner.name}
        rows.append(row)
    return {"schema": SCHEMA, "cluster": cluster, "generated_at": generated_at, "target_groups": rows}


# Bounds on what a published document may say: AWS's own limits, rounded up. A document from anywhere
# else (forged, corrupt) cannot make a node agent probe with absurd settings or carry huge strings.
_NUMBERS = {"interval": (1, 3600), "timeout": (1, 3600), "healthy_threshold": (1, 100), "unhealthy_threshold": (1, 100)}
_TEXT_LIMIT = 2048  # an ARN's longest; paths are at most 1024


def _int(row: Mapping[str, Any], key: str) -> int:
    value = row.get(key)
    low, high = _NUMBERS[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DocumentError(f"target group {_arn(row)}: {key} must be a number from {low} to {high}, got {value!r}")
    return value


def _arn(row: Mapping[str, Any]) -> str:
    return str(row.get("arn", "?"))[:_TEXT_LIMIT]


def _text(row: Mapping[str, Any], key: str, default: str = "") -> str:
    value = row.get(key, default)
    if not isinstance(value, str) or len(value) > _TEXT_LIMIT:
        raise DocumentError(f"target group {_arn(row)}: {key} must be text of at most {_TEXT_LIMIT} characters")
    return value


def _optional_text(row: Mapping[str, Any], key: str) -> str | None:
    return None if row.get(key) is None else _text(row, key)


def from_document(document: Any) -> tuple[RealHealthCheck, ...]:
    """Parse a published document; raises DocumentError naming the first problem."""
    if not isinstance(document, Mapping) or document.get("schema") != SCHEMA:
        raise DocumentError(f"not a {SCHEMA} document")
    rows = document.get("target_groups")
    if not isinstance(rows, list):
        raise DocumentError("target_groups must be a list")
    checks = []
    for row in rows:
        if not isinstance(row, Mapping) or not isinstance(row.get("owner"), Mapping):
            raise DocumentError("each target group needs an owner {kind, namespace, name}")
        owner = row["owner"]
        port = row.get("port")
        service_port = row.get("service_port")
        if not (
            port == "traffic-port" or (isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535)
        ):
            raise DocumentError(f"target group {_arn(row)}: port must be traffic-port or a port number")
        if isinstance(service_port, str) and len(service_port) > 63:
            raise DocumentError(f"target group {_arn(row)}: service_port is not a port name")
        checks.append(
            RealHealthCheck(
                arn=_text(row, "arn"),
                target_group=_text(row, "target_group"),
                owner=ObjectRef(*(_text(owner, key) for key in ("kind", "namespace", "name"))),
                service=_text(row, "service"),
                service_port=service_port if isinstance(service_port, (int, str)) else None,
                target_type=_text(row, "target_type"),
                protocol=_text(row, "protocol", TCP).upper(),
                port=port,
                path=_optional_text(row, "path"),
                success_codes=_optional_text(row, "success_codes"),
                protocol_version=_optional_text(row, "protocol_version"),
                interval=_int(row, "interval"),
                timeout=_int(row, "timeout"),
                healthy_threshold=_int(row, "healthy_threshold"),
                unhealthy_threshold=_int(row, "unhealthy_threshold"),
            )
        )
    return tuple(checks)


def serves(check: RealHealthCheck, backend: Backend) -> bool:
    """Is this the target group of that backend (same owner, same Service port)?"""
    if backend.owner != check.owner or backend.service is None or backend.service_port is None:
        return False
    if check.service and backend.service.meta.name != check.service:
        return False
    return port_matches(backend.service_port, check.service_port)


def port_matches(port: ServicePort, wanted: int | str | None) -> bool:
    """A Service port named the way AWS tags or a TargetGroupBinding name it: number, name or targetPort."""
    if wanted is None:
        return True
    if isinstance(wanted, int):
        return port.port == wanted
    return wanted in (port.name, str(port.port), str(port.target_port))


def real_spec(check: RealHealthCheck, base: HealthCheckSpec, service: Service | None) -> HealthCheckSpec:
    """The health check the node agent should probe: AWS's settings over the annotation-derived ones."""
    protocol = check.protocol.upper() if check.protocol.upper() in (HTTP, HTTPS, TCP) else base.protocol
    port: int | str = check.port
    if isinstance(port, str) and port != ann.TRAFFIC_PORT:
        port = int(port) if port.isdigit() else base.port
    codes: SuccessCodes | None = None
    path: str | None = None
    if protocol != TCP:
        path = check.path or "/"
        codes = base.success_codes
        if check.success_codes:
            try:
                codes = parse_success_codes(check.success_codes, _CODE_BOUNDS)
            except SuccessCodesError:
                codes = base.success_codes
    node_port = service.health_check_node_port if service is not None else None
    return replace(
        base,
        protocol=protocol,
        port=port,
        path=path,
        success_codes=codes,
        interval=check.interval,
        timeout=check.timeout,
        healthy_threshold=check.healthy_threshold,
        unhealthy_threshold=check.unhealthy_threshold,
        protocol_version=check.protocol_version or base.protocol_version,
        node_health_check=base.target_type == INSTANCE and node_port is not None and port == node_port,
    )


def apply(plan: LbPlan, checks: Sequence[RealHealthCheck]) -> LbPlan:
    """The plan with every backend AWS knows probed as AWS checks it. Annotation problems stay."""
    if not checks:
        return plan
    backends = []
    for backend in plan.backends:
        found = next((c for c in checks if serves(c, backend)), None) if backend.resolution is not None else None
        if found is None or backend.resolution is None:
            backends.append(backend)
            continue
        spec = real_spec(found, backend.resolution.spec, backend.service)
        backends.append(replace(backend, resolution=Resolution(spec, backend.resolution.problems)))
    return replace(plan, backends=tuple(backends))


def _comparable_port(spec: HealthCheckSpec, service: Service | None) -> int | str | None:
    """A health-check port as AWS would spell it; None when a named port cannot be resolved."""
    port = spec.port
    if not isinstance(port, str) or port == ann.TRAFFIC_PORT:
        return port
    named = service.port_named(port) if service is not None else None
    if named is None:
        return None
    if spec.target_type == INSTANCE:
        return named.node_port
    return named.target_port if isinstance(named.target_port, int) else None


def differences(wanted: HealthCheckSpec, real: HealthCheckSpec, service: Service | None) -> tuple[str, ...]:
    """What AWS has that the annotations do not ask for, one phrase per field, e.g.
    ``path /healthz (annotations: /)``."""
    found = []

    def differ(name: str, have: object, want: object) -> None:
        if have != want:
            found.append(f"{name} {have} (annotations: {want})")

    differ("protocol", real.protocol, wanted.protocol)
    wanted_port = _comparable_port(wanted, service)
    if wanted_port is not None:
        differ("port", real.port, wanted_port)
    if real.protocol != TCP and wanted.protocol != TCP:
        differ("path", real.path, wanted.path)
        have_codes = real.success_codes.ranges if real.success_codes else None
        want_codes = wanted.success_codes.ranges if wanted.success_codes else None
        if have_codes != want_codes:
            found.append(f"success codes {real.success_codes} (annotations: {wanted.success_codes})")
    differ("interval", f"{real.interval}s", f"{wanted.interval}s")
    differ("timeout", f"{real.timeout}s", f"{wanted.timeout}s")
    differ("healthy threshold", real.healthy_threshold, wanted.healthy_threshold)
    differ("unhealthy threshold", real.unhealthy_threshold, wanted.unhealthy_threshold)
    return tuple(found)
