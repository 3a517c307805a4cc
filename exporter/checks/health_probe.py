"""Runbook step "test the health check by hand" (``curl``/``nc`` from inside the cluster), continuously.

The verdict follows the load balancer's own thresholds: ``fail`` once the LB would mark the target
unhealthy, ``warn`` while checks fail but the LB still counts it healthy (the lead time before the
page), ``ok`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter.checks.context import Scope
from exporter.lb import annotations as ann
from exporter.lb.backends import ROUTE_OWNER_KINDS
from exporter.lb.healthcheck import ALB, INSTANCE, NLB
from exporter.lb.targets import ProbeTarget, TargetStatus
from exporter.lb.thresholds import LbState
from exporter.model import subjects
from exporter.model.probe import ProbeOutcome
from exporter.model.results import Check, CheckResult, Reason, Status

# A target whose predicted state changed this often within the window is reported as flapping: at any
# moment it may look healthy, yet the LB keeps pulling it in and out of rotation.
FLAP_WINDOW_SECONDS = 600.0
FLAP_MIN_TRANSITIONS = 2


def evaluate(scope: Scope) -> Iterable[CheckResult]:
    if scope.node is None:
        return ()
    return (verdict(status, scope.now) for status in scope.node.statuses)


def about(target: ProbeTarget) -> tuple[tuple[str, str], ...]:
    """What a probe result is about: the pod (or the node, for a node path), the Service, and the target
    group's target there, which is where the load balancer's own verdict on it meets it."""
    namespace, owner = target.namespace, target.owner
    if target.node_path:
        return (
            subjects.node(target.node),
            subjects.service(namespace, target.service),
            subjects.service_node(namespace, target.service, target.node),
            subjects.tg_node(owner, target.node),
        )
    found: tuple[tuple[str, str], ...] = (
        subjects.pod(namespace, target.pod),
        subjects.service(namespace, target.service),
        subjects.service_pod(namespace, target.service, target.pod),
        subjects.tg_pod(owner, target.pod),
    )
    if target.target_type == INSTANCE:
        # An instance target reaches the pods of its node (and others) through the NodePort: the LB's verdict
        # on the node's instance target meets the pod's probe too.
        found = (*found, subjects.tg_node(owner, target.node))
    if owner.kind in ROUTE_OWNER_KINDS:
        # A route's health check is what its TargetGroupConfigurations merge to: a merge that dropped a field
        # explains the probe that checks what is left.
        found = (*found, subjects.model(owner))
    return found


def describe(target: ProbeTarget) -> str:
    request = target.request
    host = f"[{request.ip}]" if ":" in request.ip else request.ip
    if request.protocol == "TCP":
        return f"TCP connect to {host}:{request.port}"
    if request.kind == "GRPC":
        scheme = "h2" if request.protocol == "HTTPS" else "h2c"
        return f"gRPC POST {scheme}://{host}:{request.port}{request.path}"
    return f"GET {request.protocol.lower()}://{host}:{request.port}{request.path}"


def _result(status: TargetStatus, verdict_: Status, reason: Reason | None, message: str, remedy: str) -> CheckResult:
    target = status.target
    return CheckResult(
        Check.HEALTH_PROBE,
        verdict_,
        reason,
        target.owner,
        message,
        remedy,
        target=target.ref,
        node=target.node,
        about=about(target) if subjects.linkable(verdict_) else (),
    )


def verdict(status: TargetStatus, now: float) -> CheckResult:
    """The LB's verdict on one target. The flapping window ends at the target's last probe (``now`` only before
    the first): a verdict changes when a probe finishes, so the node role re-evaluates a target only then."""
    result = _state_verdict(status)
    moment = status.probed_at if status.probed_at is not None else now
    flips = status.flips_since(moment - FLAP_WINDOW_SECONDS)
    if flips < FLAP_MIN_TRANSITIONS or result.status is Status.UNKNOWN:
        return result
    target = status.target
    return _result(
        status,
        Status.FAIL if result.status is Status.FAIL else Status.WARN,
        Reason.FLAPPING,
        f"flapping: the {target.lb.upper()} verdict changed {flips} times in the last "
        f"{FLAP_WINDOW_SECONDS / 60:g} min; now: {result.message}",
        "find what makes the health endpoint fail intermittently (slow dependencies, GC pauses, resource "
        "limits: kubectl top pod); a health check that tests only the process itself, or a higher "
        f"unhealthy threshold, stops the churn. {result.remedy}".strip(),
    )


def _state_verdict(status: TargetStatus) -> CheckResult:
    target = status.target
    where = f"pod {target.pod}" if target.pod else f"node {target.node} through kube-proxy, as an instance target"
    what = f"{describe(target)} ({where}, {target.lb.upper()} health check)"
    if not target.supported:
        return _result(
            status,
            Status.UNKNOWN,
            Reason.UNSUPPORTED_HEALTH_CHECK,
            f"{what}: lbdoctor cannot send this health check",
            "check the target by hand against the health-check path",
        )
    outcome = status.outcome
    if outcome is None:
        return _result(
            status,
            Status.UNKNOWN,
            Reason.NOT_PROBED_YET,
            f"{what}: first probe due within {target.interval:g} s",
            "",
        )
    health = status.health
    limits = target.thresholds
    if health.state is LbState.UNHEALTHY:
        failure = outcome if not outcome.success else status.last_failure
        reason = failure.reason if failure is not None else None
        if outcome.success:
            message = (
                f"{what}: recovering, {health.ok_streak} of {limits.healthy} passing checks before the LB "
                f"marks it healthy again (last failure: {failure.detail if failure else 'unknown'})"
            )
        else:
            # Bounded at the threshold: the message stays the same while the target keeps failing, so a node
            # agent's answer to the cluster role does not change with every probe (docs/performance.md).
            streak = f"{health.fail_streak}" if health.fail_streak < limits.unhealthy else f"{limits.unhealthy} or more"
            message = (
                f"{what}: {outcome.detail}; failed {streak} checks in a row, so the "
                f"{target.lb.upper()} marks the target unhealthy (threshold {limits.unhealthy})"
            )
        return _result(status, Status.FAIL, reason, message, remedy(reason, target, failure))
    if not outcome.success:
        left = health.checks_until_unhealthy(limits)
        lead = left * target.interval
        message = (
            f"{what}: {outcome.detail}; failed {health.fail_streak} of the {limits.unhealthy} checks it takes "
            f"before the LB marks the target unhealthy (in about {lead:g} s)"
        )
        return _result(status, Status.WARN, outcome.reason, message, remedy(outcome.reason, target, outcome))
    state = "healthy" if health.state is LbState.HEALTHY else "registering"
    code = f"HTTP {outcome.status_code}" if outcome.status_code else "connected"
    if outcome.grpc_status is not None:
        code = outcome.detail  # gRPC status N (NAME)
    return _result(
        status,
        Status.OK,
        None,
        f"{what}: {code} in {outcome.duration * 1000:.0f} ms; the LB counts it {state}",
        "",
    )


# The TargetGroupConfiguration field that sets what an ALB annotation sets (Gateway API targets).
_TGC_FIELDS = {
    "healthcheck-path": "healthCheckPath",
    "healthcheck-timeout-seconds": "healthCheckTimeout",
    "healthcheck-protocol": "healthCheckProtocol",
    "success-codes": "matcher",
}


def _annotation(target: ProbeTarget, alb_suffix: str, nlb_suffix: str) -> str:
    if target.owner.kind in ROUTE_OWNER_KINDS:
        field = _TGC_FIELDS.get(alb_suffix, alb_suffix)
        return f"healthCheckConfig.{field} of the Service's TargetGroupConfiguration"
    if target.lb == ALB:
        return ann.ALB_PREFIX + alb_suffix
    if target.lb == NLB:
        return ann.NLB_PREFIX + nlb_suffix
    return "the target group's health-check settings"


def remedy(reason: Reason | None, target: ProbeTarget, outcome: ProbeOutcome | None) -> str:
    request = target.request
    if target.node_path:
        return (
            f"the load balancer reaches instance targets at {request.ip}:{request.port} through kube-proxy: check the "
            f"kube_proxy results for node {target.node} and Service {target.namespace}/{target.service} (stale or "
            f"missing rules), the pods' own probes, and that the node's security group allows port {request.port}"
        )
    pod = f"-n {target.namespace} {target.pod}"
    if reason is Reason.CONNECTION_REFUSED:
        return (
            f"nothing listens on port {request.port} in pod {target.pod}: check the port the app binds "
            f"(kubectl exec {pod} -- ss -ltnp) against the Service targetPort, and kubectl logs {pod}"
        )
    if reason is Reason.TIMEOUT:
        return (
            f"the app answers slower than the {request.timeout:g} s health-check timeout: make the health "
            f"endpoint cheap (no downstream calls), or raise {_annotation(target, 'healthcheck-timeout-seconds', 'healthcheck-timeout')} "  # noqa: E501
            f"(keeping the interval above it)"
        )
    if reason is Reason.RESPONSE_CODE_MISMATCH and request.kind == "GRPC":
        code = outcome.grpc_status if outcome else None
        return (
            f"{request.path} answered gRPC status {code}: the ALB judges the grpc-status, not the message. Point "
            f"{_annotation(target, 'healthcheck-path', 'healthcheck-path')} at a method the server implements (such as "
            f"/grpc.health.v1.Health/Check, which answers 0), or set "
            f"{_annotation(target, 'success-codes', 'healthcheck-success-codes')} to the status it answers (the "
            f"default 12, UNIMPLEMENTED, suits a server without the default /AWS.ALB/healthcheck)"
        )
    if reason is Reason.RESPONSE_CODE_MISMATCH:
        code = outcome.status_code if outcome else None
        return (
            f"{request.path} answered {code}: point {_annotation(target, 'healthcheck-path', 'healthcheck-path')} "
            f"at an endpoint that answers 200 without auth or redirects, or widen "
            f"{_annotation(target, 'success-codes', 'healthcheck-success-codes')}"
        )
    if reason is Reason.TLS_ERROR:
        return (
            "the health check speaks HTTPS but the pod does not complete a TLS handshake: set "
            f"{_annotation(target, 'healthcheck-protocol', 'healthcheck-protocol')} (and the backend protocol) "
            "to match what the pod serves"
        )
    if reason is Reason.CONNECTION_RESET:
        return f"the app resets health-check connections: kubectl logs {pod}; check proxies or connection limits"
    if reason is Reason.INVALID_RESPONSE:
        return (
            "the port does not answer HTTP: if it speaks another protocol use a TCP health check, otherwise "
            f"check that {request.port} is the HTTP port"
        )
    if reason is Reason.HOST_UNREACHABLE:
        return f"the pod IP {request.ip} is unreachable from its own node: check the CNI (aws-node) on this node"
    return f"kubectl describe pod {pod} and kubectl logs {pod}"
