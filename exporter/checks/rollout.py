"""The 5xx window during rollouts and node churn (check ``rollout``).

When a pod is deleted, the controller deregisters its target and the load balancer drains it for the
target group's deregistration delay (``deregistration_delay.timeout_seconds``, 300 s by default). Requests
fail when the pod stops before the load balancer has stopped sending to it:

- the containers get SIGTERM at once unless a ``preStop`` hook delays it, while the controller and the
  load balancer need seconds to take the target out of rotation (``NoPreStopHook``);
- the kubelet kills the pod after ``terminationGracePeriodSeconds``, though its target may drain for longer:
  connections still open to it are cut (``GracePeriodShorterThanDeregistrationDelay``);
- a preStop sleep as long as the grace period leaves the app no time to stop cleanly
  (``PreStopLongerThanGracePeriod``);
- seen on the AWS side: a target still draining (or in service) whose pod, or node, is already gone or past
  its grace period (``TerminatedWhileRegistered``).

The pod checks apply to ip targets, whose traffic goes to the pod itself; instance targets are nodes, and
their window is the node's termination (Karpenter consolidation, scale-in), seen from AWS. Pure: the
clock comes in ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from exporter.checks.aws_context import AwsContext, TargetView
from exporter.checks.context import Scope
from exporter.lb.backends import Backend
from exporter.lb.healthcheck import IP, TGB
from exporter.model import subjects
from exporter.model.objects import Pod, Service
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, Status

CHECK = Check.ROLLOUT
_SHOWN = 3  # pods named in a message


@dataclass(frozen=True, slots=True)
class _Delay:
    seconds: int
    owners: tuple[str, ...]  # "Ingress shop/web: 300 s"


def _delay(backends: Sequence[Backend]) -> _Delay | None:
    """The longest deregistration delay of the Service's ip target groups, and whose they are. A target group
    the controller did not create (a TargetGroupBinding's) has its delay in AWS only: it is left out."""
    found = [
        (b.resolution.deregistration_delay, f"{b.owner.kind} {b.owner.namespace}/{b.owner.name}")
        for b in backends
        if b.resolution is not None and b.resolution.spec.target_type == IP and b.lb != TGB
    ]
    if not found:
        return None
    longest = max(seconds for seconds, _ in found)
    owners = sorted({f"{who}: {seconds} s" for seconds, who in found})
    return _Delay(longest, tuple(owners))


def _names(pods: Sequence[Pod]) -> str:
    shown = ", ".join(p.meta.name for p in pods[:_SHOWN])
    return shown + (f" and {len(pods) - _SHOWN} more" if len(pods) > _SHOWN else "")


def _pre_stop_seconds(pod: Pod) -> float | None:
    """The longest delay a container's preStop gives before SIGTERM; 0 when known to be none, None unknown."""
    known = [hook.seconds for hook in pod.pre_stop]
    if not known:
        return 0.0
    if any(seconds is None for seconds in known):
        return None  # an exec or httpGet hook: it delays by however long it runs
    return max(seconds for seconds in known if seconds is not None)


def evaluate(scope: Scope) -> Iterable[CheckResult]:
    """The pods' side for the load-balanced Services in scope; the AWS side when AWS is in scope."""
    for found in scope.services:
        yield from evaluate_service(found.service, found.pods, found.backends)
    if scope.aws is not None:
        yield from evaluate_aws(scope.aws)


def evaluate_service(service: Service, pods: Sequence[Pod], backends: Sequence[Backend]) -> list[CheckResult]:
    """Deregistration delay vs the pods' termination, for the Service's ip target groups."""
    delay = _delay(backends)
    if delay is None:
        return []
    ref = ObjectRef("Service", service.meta.namespace, service.meta.name)
    running = [pod for pod in pods if pod.phase == "Running" and not pod.meta.deleting]
    if not running:
        return []
    groups = "; ".join(delay.owners)
    results = []
    no_hook = [pod for pod in running if _pre_stop_seconds(pod) == 0.0]
    if no_hook:
        results.append(
            CheckResult(
                CHECK,
                Status.WARN,
                Reason.NO_PRE_STOP_HOOK,
                ref,
                f"{len(no_hook)} of {len(running)} pods of Service {service.meta.key} ({_names(no_hook)}) have no "
                f"preStop hook: when one is deleted its containers get SIGTERM at once, while the load balancer "
                f"keeps sending it requests until its target is deregistered (target groups: {groups})",
                "add a preStop hook that sleeps a little longer than deregistration takes (lifecycle.preStop.sleep."
                "seconds: 15, or exec sleep 15), and keep terminationGracePeriodSeconds above it",
            )
        )
    short = [pod for pod in running if pod.termination_grace < delay.seconds]
    if short:
        graces = sorted({pod.termination_grace for pod in short})
        results.append(
            CheckResult(
                CHECK,
                Status.WARN,
                Reason.GRACE_PERIOD_SHORTER_THAN_DEREGISTRATION_DELAY,
                ref,
                f"pods of Service {service.meta.key} ({_names(short)}) are killed "
                f"{', '.join(map(str, graces))} s after deletion (terminationGracePeriodSeconds), but their "
                f"targets drain for {delay.seconds} s (deregistration delay; target groups: {groups}): "
                f"connections still open to a pod when it is killed fail",
                f"lower deregistration_delay.timeout_seconds (target-group attributes) below "
                f"{min(graces)} s, or raise terminationGracePeriodSeconds above {delay.seconds} s",
            )
        )
    cut = [
        pod for pod in running if (seconds := _pre_stop_seconds(pod)) is not None and seconds >= pod.termination_grace
    ]
    if cut:
        results.append(
            CheckResult(
                CHECK,
                Status.WARN,
                Reason.PRE_STOP_LONGER_THAN_GRACE_PERIOD,
                ref,
                f"pods of Service {service.meta.key} ({_names(cut)}) sleep in preStop for at least their "
                f"terminationGracePeriodSeconds: the kubelet kills them before the app gets SIGTERM and can stop "
                f"cleanly",
                "keep the preStop sleep well below terminationGracePeriodSeconds (for example 15 s of 60 s)",
            )
        )
    # A Service's termination settings explain its targets the load balancer saw cut (TerminatedWhileRegistered).
    about = (subjects.service(service.meta.namespace, service.meta.name),)
    results = [replace(result, about=about) for result in results]
    if not results:
        hooks = sorted({s for pod in running if (s := _pre_stop_seconds(pod)) is not None})
        hook = f"preStop sleeps of {', '.join(f'{s:g}' for s in hooks)} s" if hooks else "preStop hooks"
        results.append(
            CheckResult(
                CHECK,
                Status.OK,
                None,
                ref,
                f"pods of Service {service.meta.key} have {hook} and outlive their targets' deregistration delay "
                f"({groups})",
            )
        )
    return results


def evaluate_aws(context: AwsContext) -> Iterable[CheckResult]:
    """Targets the load balancer still has registered (draining, or in service) whose pod or node is gone or past
    its grace period: the window, seen."""
    for view in context.targets:
        result = _terminated(view, context.now)
        if result is not None:
            yield result


_REGISTERED = ("draining", "healthy", "initial", "unhealthy", "unhealthy.draining")


def _terminated(view: TargetView, now: float) -> CheckResult | None:
    target = view.target
    if target.state not in _REGISTERED:
        return None
    backend = view.group.owner.backend
    delay = backend.resolution.deregistration_delay if backend is not None and backend.resolution else None
    drains = f" (deregistration delay {delay} s)" if delay is not None else ""
    instance = target.id.startswith("i-")
    place = view.place
    where = f"{view.describe()} in {view.group.label}"
    if instance:
        if place.node is not None or target.state != "draining":
            return None
        return _result(
            view,
            f"{where} is still draining{drains}, but no node of the cluster is instance {target.id} any more: the "
            f"node was removed (scale-in, Karpenter consolidation) before the load balancer finished draining it, "
            f"and connections through it failed",
            "drain nodes before terminating them, and let the deregistration finish: Karpenter's and the node "
            "groups' termination grace (terminationGracePeriod, lifecycle hooks) should exceed the deregistration "
            "delay, or lower the delay",
        )
    pod = place.pod
    if pod is None:
        if target.state != "draining":
            return None  # healthy with no pod: elb_target_health's TargetNotInCluster
        return _result(
            view,
            f"{where} is still draining{drains}, but no pod has address {place.ip or target.id} any more: the pod "
            f"stopped before the load balancer finished draining its target, so requests on its open connections "
            f"failed",
            "keep pods alive until their target has drained: a preStop sleep, and terminationGracePeriodSeconds "
            "above the deregistration delay (or a shorter delay)",
        )
    deadline = pod.meta.deletion_deadline
    if deadline is None or not now or now < deadline:
        return None
    late = now - deadline
    return _result(
        view,
        f"{where} is still {target.state}{drains}, but pod {pod.meta.name} passed the end of its grace period "
        f"{late:.0f} s ago: the kubelet killed it while the load balancer could still send to it",
        "raise terminationGracePeriodSeconds above the deregistration delay, add a preStop sleep, or lower "
        "deregistration_delay.timeout_seconds",
    )


def _result(view: TargetView, message: str, remedy: str) -> CheckResult:
    about = view.about
    service = view.group.owner.service
    if service:
        about = (*about, subjects.service(view.group.owner.namespace, service))
    return CheckResult(
        CHECK,
        Status.FAIL,
        Reason.TERMINATED_WHILE_REGISTERED,
        view.owner,
        message,
        remedy,
        target=view.ref,
        about=about,
    )
