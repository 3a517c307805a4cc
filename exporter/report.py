"""Results as plain JSON-ready data: shared by the JSON API and ``lbdoctor diagnose --output json``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from exporter.lb.targets import TargetStatus
from exporter.model.results import CheckResult, Status

CHECK_TITLES = {
    "pod_status": "Pod running, containers ready",
    "selector": "Pod and Service label selectors",
    "endpoints": "Service endpoints",
    "traffic_policy": "externalTrafficPolicy and target type",
    "security_groups": "Node-group security groups",
    "target_port": "targetPort matches containerPort",
    "controller": "AWS Load Balancer Controller",
    "ingress_annotations": "Ingress annotations (ALB)",
    "service_annotations": "Service annotations (NLB)",
    "health_probe": "Health check tested by hand (curl / nc)",
    "network": "Network ACLs and route tables",
    "kube_proxy": "kube-proxy rules",
    "elb_target_health": "Target health reported by the load balancer",
}


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def summary(results: Sequence[CheckResult]) -> dict[str, int]:
    counts = {status.value: 0 for status in Status}
    for result in results:
        counts[result.status.value] += 1
    return counts


def results_json(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    index = {result.key: position for position, result in enumerate(results)}
    return [
        {
            "check": result.check.value,
            "status": result.status.value,
            "reason": result.reason.value if result.reason else None,
            "object": {"kind": result.object.kind, "namespace": result.object.namespace, "name": result.object.name},
            "target": (
                None
                if result.target is None
                else {"pod": result.target.pod, "ip": result.target.ip, "port": result.target.port}
            ),
            "message": result.message,
            "remedy": result.remedy,
            "caused_by": index.get(result.caused_by) if result.caused_by is not None else None,
        }
        for result in results
    ]


def targets_json(statuses: Sequence[TargetStatus]) -> list[dict[str, Any]]:
    rows = []
    for status in statuses:
        target, outcome = status.target, status.outcome
        request = target.request
        rows.append(
            {
                "namespace": target.namespace,
                "service": target.service,
                "owner": {"kind": target.owner.kind, "name": target.owner.name},
                "pod": target.pod,
                "node": target.node,
                "lb": target.lb,
                "ip": request.ip,
                "port": request.port,
                "protocol": request.protocol,
                "path": request.path if request.protocol != "TCP" else None,
                "interval_seconds": target.interval,
                "timeout_seconds": request.timeout,
                "healthy_threshold": target.healthy_threshold,
                "unhealthy_threshold": target.unhealthy_threshold,
                "predicted_state": status.health.state.value,
                "transitions": status.health.transitions,
                "last_probe": None
                if outcome is None or status.probed_at is None
                else {
                    "at": iso(status.probed_at),
                    "success": outcome.success,
                    "reason": outcome.reason.value if outcome.reason else None,
                    "status_code": outcome.status_code,
                    "duration_seconds": round(outcome.duration, 6),
                    "detail": outcome.detail,
                },
            }
        )
    return rows
