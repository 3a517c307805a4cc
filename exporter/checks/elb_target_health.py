"""Runbook step "what the load balancer itself says": DescribeTargetHealth, target by target.

Each ELB target is mapped to its pod (ip targets) or node (instance targets) and reported with AWS's
state and reason verbatim (``Target.Timeout``, …). Per target group, lbdoctor also reports a
binding to a target group AWS does not know, a target group with no targets, one it cannot check
(lambda/alb targets), and drift between the annotations and the target group's real health check.
``exporter.checks.elb_correlation`` then says which side a disagreement with the probes is on.
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter.aws.model import ProblemKind, TargetTrack
from exporter.aws.publish import real_health_check
from exporter.checks.aws_context import AwsContext, GroupView, TargetView, problem_result
from exporter.checks.context import Scope
from exporter.lb.aws_settings import differences, real_spec
from exporter.lb.healthcheck import ALB, NLB
from exporter.model import subjects
from exporter.model.results import Check, CheckResult, Reason, Status

CHECK = Check.ELB_TARGET_HEALTH

# The reason codes AWS documents, by their verbatim text.
AWS_REASONS = {reason.value: reason for reason in Reason if reason.value.startswith(("Elb.", "Target."))}

# A target may sit in "initial" this long beyond its own health-check schedule before lbdoctor warns.
REGISTRATION_GRACE_SECONDS = 60.0

_REMEDIES = {
    Reason.TARGET_TIMEOUT: "the load balancer gets no answer within the health-check timeout: either the path from "
    "the load balancer is blocked (see this target's security_groups and network results) or the app answers "
    "slower than the timeout (see health_probe)",
    Reason.TARGET_RESPONSE_CODE_MISMATCH: "the health-check path answers a code outside the matcher: point the "
    "health check at an endpoint that answers it without auth or redirects, or widen the success codes",
    Reason.TARGET_FAILED_HEALTH_CHECKS: "connections fail or the answer is malformed: check that the app listens on "
    "the health-check port and speaks the health-check protocol; if lbdoctor's probe passes, check the security "
    "groups and NACLs between the load balancer and the target",
    Reason.ELB_INTERNAL_ERROR: "an error inside the load balancer; if it persists, open an AWS support case",
    Reason.TARGET_NOT_IN_USE: "attach the target group to a listener or rule of its load balancer, or enable the "
    "target's Availability Zone (subnet) on the load balancer",
    Reason.TARGET_INVALID_STATE: "the instance is stopped or terminated: replace the node, or deregister it",
    Reason.TARGET_IP_UNUSABLE: "the address belongs to a load balancer: remove it from the target group",
    Reason.TARGET_NOT_REGISTERED: "the target is not registered: check the controller's reconcile of the "
    "TargetGroupBinding (kubectl describe targetgroupbinding)",
    Reason.TARGET_HEALTH_CHECK_DISABLED: "enable health checks on the target group",
    Reason.ELB_INITIAL_HEALTH_CHECKING: "the first health checks have not passed: see health_probe for what the "
    "check answers, and the pod's readiness gate (target-health.elbv2.k8s.aws/…)",
    Reason.ELB_REGISTRATION_IN_PROGRESS: "registration is slow: check the AWS Load Balancer Controller's logs",
}


def evaluate(scope: Scope) -> Iterable[CheckResult]:
    return () if scope.aws is None else evaluate_aws(scope.aws)


def evaluate_aws(context: AwsContext) -> Iterable[CheckResult]:
    for view in context.groups:
        yield from _group_results(context, view)
    for target in context.targets:
        if target.group.group is None or target.group.group.supported:
            yield verdict(target, context.aws.history.get(_key(target)), context.now)


def _key(view: TargetView) -> tuple[str, str, int | None]:
    return (view.group.arn, view.target.id, view.target.port)


def _group_results(context: AwsContext, view: GroupView) -> Iterable[CheckResult]:
    owner = view.owner.owner
    missing = context.aws.missing.get(view.arn)
    if missing is not None:
        binding = view.owner.binding
        who = f"TargetGroupBinding {binding.meta.key}" if binding is not None else "a TargetGroupBinding"
        yield CheckResult(
            CHECK,
            Status.FAIL,
            Reason.TARGET_GROUP_NOT_FOUND,
            owner,
            f"{who} points at {view.arn}, which AWS does not know ({missing.message}); the controller cannot "
            f"register targets in it",
            "fix spec.targetGroupARN (and check the target group's Region and account), or recreate the target group",
        )
        return
    group = view.group
    if group is not None and not group.supported:
        yield CheckResult(
            CHECK,
            Status.UNKNOWN,
            Reason.UNSUPPORTED_TARGET_TYPE,
            owner,
            f"{view.label} has {group.target_type} targets, which are not pods or nodes; lbdoctor skips it",
        )
        return
    if view.problem is not None:
        if view.problem.kind is not ProblemKind.NOT_FOUND:
            yield problem_result(CHECK, owner, view.problem, f"the targets of {view.label}")
        return
    if view.health is None:
        yield CheckResult(
            CHECK,
            Status.UNKNOWN,
            Reason.NOT_PROBED_YET,
            owner,
            f"the health of {view.label}'s targets has not been read yet (lbdoctor paces its AWS calls)",
        )
        return
    if not view.health.targets:
        yield CheckResult(
            CHECK,
            Status.WARN,
            Reason.NO_REGISTERED_TARGETS,
            owner,
            f"{view.label} has no registered targets, so its load balancer has nowhere to send traffic",
            "check that the Service selects ready pods (endpoints), that instance targets' nodes are eligible "
            "(not Fargate, have a providerID), and the controller's TargetGroupBinding events",
            about=_GROUP_ABOUT,
        )
    drift = _drift(view)
    if drift is not None:
        yield drift


def _drift(view: GroupView) -> CheckResult | None:
    backend, group = view.owner.backend, view.group
    if backend is None or group is None or backend.resolution is None or backend.lb not in (ALB, NLB):
        return None  # only controller-managed target groups have annotations to drift from
    real = real_health_check(group, view.owner)
    if real is None:
        return None
    wanted = backend.resolution.spec
    found = differences(wanted, real_spec(real, wanted, backend.service), backend.service)
    if not found:
        return None
    owner = view.owner.owner
    return CheckResult(
        CHECK,
        Status.WARN,
        Reason.HEALTH_CHECK_DRIFT,
        owner,
        f"{view.label}'s real health check differs from what the annotations of {owner.kind} "
        f"{owner.namespace}/{owner.name} ask for: {'; '.join(found)}. lbdoctor's node agents probe with the real "
        f"settings",
        "someone changed the target group outside Kubernetes, or the controller has not reconciled: fix the "
        "annotations to match, or let the controller reconcile (kubectl describe the object for its events)",
        about=_GROUP_ABOUT,
    )


def verdict(view: TargetView, track: TargetTrack | None, now: float) -> CheckResult:
    target = view.target
    state = target.state
    code = target.reason
    reason = AWS_REASONS.get(code or "") if code else None
    if code and reason is None:
        reason = Reason.ELB_UNKNOWN_REASON
    said = f"{state}" + (
        f" ({code}: {target.description})" if code and target.description else f" ({code})" if code else ""
    )
    what = f"{view.describe()} in {view.group.label}"
    unmapped = view.place.pod is None and view.place.node is None
    if state == "healthy":
        if unmapped:
            return _result(
                view,
                Status.WARN,
                Reason.TARGET_NOT_IN_CLUSTER,
                f"{what} is healthy, but no pod or node of this cluster has address {target.id}: the load "
                f"balancer sends traffic outside the cluster",
                "deregister the stale target, or check whether the target group is shared with another cluster",
            )
        return _result(view, Status.OK, None, f"{what}: healthy, in service")
    if state == "initial":
        limit = _registration_limit(view)
        waited = now - track.since if track is not None and now else 0.0
        if waited > limit:
            return _result(
                view,
                Status.WARN,
                reason,
                f"{what}: still {said} after {waited:.0f} s (expected within {limit:.0f} s)",
                _REMEDIES.get(reason, "") if reason else "",
            )
        return _result(view, Status.OK, reason, f"{what}: {said}; the load balancer is registering it")
    if state == "draining":
        return _result(
            view,
            Status.OK,
            reason,
            f"{what}: {said}; it is leaving the target group",
            "if clients see 502s while pods roll, add a preStop sleep longer than the deregistration delay",
        )
    status = _STATUS.get((state, code or ""), _STATUS_BY_STATE.get(state, Status.UNKNOWN))
    if state not in _STATUS_BY_STATE:
        reason = Reason.ELB_UNKNOWN_REASON
    remedy = _REMEDIES.get(reason, "") if reason is not None else ""
    return _result(view, status, reason, f"{what}: the load balancer says {said}", remedy)


_STATUS_BY_STATE = {
    "unhealthy": Status.FAIL,
    "unhealthy.draining": Status.WARN,
    "unused": Status.WARN,
    "unavailable": Status.WARN,
}
_STATUS = {
    ("unused", "Target.InvalidState"): Status.FAIL,
    ("unused", "Target.IpUnusable"): Status.FAIL,
    ("unavailable", "Elb.InternalError"): Status.UNKNOWN,
}


def _registration_limit(view: TargetView) -> float:
    group = view.group.group
    check = group.health_check if group is not None else None
    interval = (check.interval if check else None) or 30
    healthy = (check.healthy_threshold if check else None) or 5
    return (healthy + 1) * interval + REGISTRATION_GRACE_SECONDS


def _result(view: TargetView, status: Status, reason: Reason | None, message: str, remedy: str = "") -> CheckResult:
    about = view.about if subjects.linkable(status) else ()
    return CheckResult(CHECK, status, reason, view.owner, message, remedy, target=view.ref, about=about)


# Group-level findings (no registered targets, drift) are about the controller's work on the owner.
_GROUP_ABOUT = (subjects.controller(),)
