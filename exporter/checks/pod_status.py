"""Runbook step "pod running, containers ready" for each load-balanced pod."""

from __future__ import annotations

from collections.abc import Iterable

from exporter.checks.context import Scope
from exporter.lb.readiness_gates import LB_GATE_PREFIXES
from exporter.model import subjects
from exporter.model.objects import Pod
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, Status


def evaluate(scope: Scope) -> Iterable[CheckResult]:
    seen: set[int] = set()  # a pod behind two Services in scope is judged once
    for served in scope.services:
        for pod in served.pods:
            if id(pod) not in seen:
                seen.add(id(pod))
                yield verdict(pod)


def _result(pod: Pod, status: Status, reason: Reason | None, message: str, remedy: str = "") -> CheckResult:
    ref = ObjectRef("Pod", pod.meta.namespace, pod.meta.name)
    about = (subjects.pod(pod.meta.namespace, pod.meta.name),) if subjects.linkable(status) else ()
    return CheckResult(Check.POD_STATUS, status, reason, ref, message, remedy, about=about)


def verdict(pod: Pod) -> CheckResult:
    where = f"-n {pod.meta.namespace} {pod.meta.name}"
    if pod.meta.deleting:
        return _result(
            pod,
            Status.WARN,
            Reason.POD_NOT_RUNNING,
            f"pod {pod.meta.key} is terminating; the load balancer drains it",
            "expected during rollouts; if it lingers, look for finalizers or a long terminationGracePeriodSeconds",
        )
    crashing = [c for c in pod.container_statuses if c.waiting_reason == "CrashLoopBackOff"]
    if crashing:
        c = crashing[0]
        last = f", last exit: {c.last_terminated_reason}" if c.last_terminated_reason else ""
        return _result(
            pod,
            Status.FAIL,
            Reason.CRASH_LOOP_BACK_OFF,
            f"container {c.name} of pod {pod.meta.key} is crash-looping ({c.restart_count} restarts{last})",
            f"kubectl logs {where} -c {c.name} --previous: fix what makes it exit",
        )
    if pod.phase != "Running":
        waiting = [f"{c.name}: {c.waiting_reason}" for c in pod.container_statuses if c.waiting_reason]
        detail = f" ({'; '.join(waiting)})" if waiting else ""
        return _result(
            pod,
            Status.FAIL,
            Reason.POD_NOT_RUNNING,
            f"pod {pod.meta.key} is {pod.phase}{detail}",
            f"kubectl describe pod {where}: read the Events for scheduling, image or volume problems",
        )
    if not pod.pod_ip:
        return _result(
            pod,
            Status.FAIL,
            Reason.POD_HAS_NO_IP,
            f"pod {pod.meta.key} runs but has no IP, so no load balancer can reach it",
            f"kubectl describe pod {where}: look for CNI (aws-node) IP allocation errors",
        )
    not_ready = [c for c in pod.container_statuses if not c.ready]
    if not_ready:
        c = not_ready[0]
        why = f" ({c.waiting_reason})" if c.waiting_reason else ""
        return _result(
            pod,
            Status.FAIL,
            Reason.CONTAINER_NOT_READY,
            f"container {c.name} of pod {pod.meta.key} is not ready{why}; the pod is out of the Service's "
            f"ready endpoints",
            f"kubectl describe pod {where}: see why its readiness probe fails",
        )
    for gate in pod.readiness_gates:
        condition = pod.condition(gate)
        if condition is None or condition.status != "True":
            aws = condition.reason if condition and condition.reason else "no verdict yet"
            note = f": {condition.message}" if condition and condition.message else ""
            lb_gate = gate.startswith(LB_GATE_PREFIXES)
            return _result(
                pod,
                Status.FAIL,
                Reason.READINESS_GATE_NOT_READY,
                f"readiness gate {gate} of pod {pod.meta.key} is not True ({aws}{note})",
                "the load balancer does not yet count this target healthy: see health_probe and "
                "elb_target_health for why"
                if lb_gate
                else f"whatever owns the condition {gate} has not set it True",
            )
    return _result(pod, Status.OK, None, f"pod {pod.meta.key} is Running and all its containers are ready")
