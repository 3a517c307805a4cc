"""Runbook step "targetPort matches containerPort" for the load-balanced pods on this node.

Traffic goes to the Service's targetPort whatever the pod's containerPort list says: a missing
containerPort alone is only a warning; the probe of that port says whether anything listens.
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter.checks.context import NodeContext
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, Status, TargetRef


def _ports(pod_ports: Iterable[tuple[str | None, int]]) -> str:
    return ", ".join(f"{name}={number}" if name else str(number) for name, number in pod_ports) or "none"


def evaluate(context: NodeContext) -> Iterable[CheckResult]:
    findings: dict[tuple[ObjectRef, str], CheckResult] = {}
    services: set[ObjectRef] = set()
    for placement in context.targets.placements:
        service, port = placement.backend.service, placement.backend.service_port
        if service is None or port is None:
            continue
        pod = placement.pod
        ref = ObjectRef("Service", service.meta.namespace, service.meta.name)
        services.add(ref)
        declared = _ports((p.name, p.container_port) for p in pod.ports)
        target = port.target_port
        if isinstance(target, str):
            if pod.port_named(target) is None:
                findings[(ref, pod.meta.name)] = CheckResult(
                    Check.TARGET_PORT,
                    Status.FAIL,
                    Reason.NAMED_PORT_NOT_FOUND,
                    ref,
                    f"Service {service.meta.key} port {port.label} targets the named port {target!r}, but pod "
                    f"{pod.meta.name} has no container port with that name (its ports: {declared})",
                    f"name the container port {target!r} in the pod template, or set targetPort to a number",
                    target=TargetRef(pod.meta.name, pod.pod_ip, None),
                )
        elif pod.ports and not pod.exposes(target) and (ref, pod.meta.name) not in findings:
            findings[(ref, pod.meta.name)] = CheckResult(
                Check.TARGET_PORT,
                Status.WARN,
                Reason.TARGET_PORT_NOT_EXPOSED,
                ref,
                f"Service {service.meta.key} port {port.label} sends traffic to port {target}, which pod "
                f"{pod.meta.name} does not declare (its container ports: {declared}); traffic still goes to "
                f"{target}, so the app must listen there",
                f"set the Service's targetPort to the port the app listens on ({declared}), or make the app "
                f"listen on {target}",
                target=TargetRef(pod.meta.name, pod.pod_ip, target),
            )
    flagged = {ref for ref, _ in findings}
    yield from findings.values()
    for ref in services - flagged:
        yield CheckResult(
            Check.TARGET_PORT, Status.OK, None, ref, f"the targetPorts of Service {ref.namespace}/{ref.name} match"
        )
