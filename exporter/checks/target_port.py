"""Runbook step "targetPort matches containerPort".

Traffic goes to the Service's targetPort whatever the pod's containerPort list says: a missing
containerPort alone is only a warning; the probe of that port says whether anything listens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from exporter.checks.context import Scope
from exporter.model import subjects
from exporter.model.objects import Pod, Service, ServicePort
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, Status, TargetRef


def _declared(pod: Pod) -> str:
    return ", ".join(f"{p.name}={p.container_port}" if p.name else str(p.container_port) for p in pod.ports) or "none"


def _about(service: Service, pod: Pod) -> tuple[tuple[str, str], ...]:
    namespace, name = service.meta.namespace, service.meta.name
    return (
        subjects.service(namespace, name),
        subjects.pod(namespace, pod.meta.name),
        subjects.service_pod(namespace, name, pod.meta.name),
    )


def findings(service: Service, port: ServicePort, pods: Iterable[Pod]) -> list[CheckResult]:
    """One result per pod whose ports do not fit the Service port's targetPort."""
    ref = ObjectRef("Service", service.meta.namespace, service.meta.name)
    found = []
    target = port.target_port
    for pod in pods:
        if isinstance(target, str):
            if pod.port_named(target) is None:
                found.append(
                    CheckResult(
                        Check.TARGET_PORT,
                        Status.FAIL,
                        Reason.NAMED_PORT_NOT_FOUND,
                        ref,
                        f"Service {service.meta.key} port {port.label} targets the named port {target!r}, but pod "
                        f"{pod.meta.name} has no container port with that name (its ports: {_declared(pod)})",
                        f"name the container port {target!r} in the pod template, or set targetPort to a number",
                        target=TargetRef(pod.meta.name, pod.pod_ip, None),
                        about=_about(service, pod),
                    )
                )
        elif pod.ports and not pod.exposes(target):
            found.append(
                CheckResult(
                    Check.TARGET_PORT,
                    Status.WARN,
                    Reason.TARGET_PORT_NOT_EXPOSED,
                    ref,
                    f"Service {service.meta.key} port {port.label} sends traffic to port {target}, which pod "
                    f"{pod.meta.name} does not declare (its container ports: {_declared(pod)}); traffic still "
                    f"goes to {target}, so the app must listen there",
                    f"set the Service's targetPort to the port the app listens on ({_declared(pod)}), or make the "
                    f"app listen on {target}",
                    target=TargetRef(pod.meta.name, pod.pod_ip, target),
                    about=_about(service, pod),
                )
            )
    return found


def evaluate_service(service: Service, ports: Sequence[ServicePort], pods: Sequence[Pod]) -> list[CheckResult]:
    """Findings for every load-balanced port of the Service, or one passing result."""
    results: dict[tuple[str | None, int | None], CheckResult] = {}
    for port in ports:
        for finding in findings(service, port, pods):
            assert finding.target is not None
            results.setdefault((finding.target.pod, finding.target.port), finding)
    if results:
        return list(results.values())
    ref = ObjectRef("Service", service.meta.namespace, service.meta.name)
    summary = ", ".join(f"{p.label}→{p.target_port}" for p in ports)
    return [CheckResult(Check.TARGET_PORT, Status.OK, None, ref, f"targetPorts ({summary}) fit the pods' ports")]


def evaluate(scope: Scope) -> Iterable[CheckResult]:
    """Each load-balanced Service, judged on the pods in scope (the node role: those on its node)."""
    for served in scope.services:
        ports: dict[str, ServicePort] = {}
        for backend in served.backends:
            if backend.service_port is not None:
                ports.setdefault(backend.service_port.label, backend.service_port)
        if ports:
            yield from evaluate_service(served.service, list(ports.values()), served.pods)
