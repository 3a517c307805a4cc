"""Runbook step "externalTrafficPolicy: Local vs Cluster".

With instance targets and ``Local``, the load balancer's health check goes to every node, and only
nodes with a ready local endpoint answer it: the others fail by design. Worth knowing before it pages.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from exporter.checks.context import Scope
from exporter.model import subjects
from exporter.model.objects import Node, Service
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, Status
from exporter.model.snapshot import ClusterSnapshot

_EXCLUDED = (
    "node.kubernetes.io/exclude-from-external-load-balancers",
    "alpha.service-controller.kubernetes.io/exclude-balancer",
    "node-role.kubernetes.io/master",
)


def _eligible(node: Node) -> bool:
    """Nodes the controller registers as instance targets (reference §1.4)."""
    labels = node.meta.labels
    return (
        node.ready
        and not any(label in labels for label in _EXCLUDED)
        and (labels.get("eks.amazonaws.com/compute-type") != "fargate")
    )


def evaluate(scope: Scope) -> Iterable[CheckResult]:
    for served in scope.services:
        target_types = {b.resolution.spec.target_type for b in served.backends if b.resolution is not None}
        result = verdict(scope.snapshot, served.service, target_types)
        if result is not None:
            yield result


def verdict(snapshot: ClusterSnapshot, service: Service, target_types: Collection[str]) -> CheckResult | None:
    """None when the policy does not matter for this Service (no instance targets, or Cluster)."""
    ref = ObjectRef("Service", service.meta.namespace, service.meta.name)
    namespace, name = service.meta.namespace, service.meta.name
    if service.external_traffic_policy != "Local" or "instance" not in target_types:
        if service.external_traffic_policy == "Local":
            return CheckResult(
                Check.TRAFFIC_POLICY,
                Status.OK,
                None,
                ref,
                "externalTrafficPolicy Local with ip targets: the load balancer checks pods directly",
            )
        return None
    unseen = snapshot.unseen("nodes")
    if unseen:
        return CheckResult(Check.TRAFFIC_POLICY, Status.UNKNOWN, Reason.FORBIDDEN, ref, f"cannot list nodes: {unseen}")
    nodes = [node for node in snapshot.nodes.values() if _eligible(node)]
    local = {
        endpoint.node_name
        for eps in snapshot.slices_of(service)
        for endpoint in eps.endpoints
        if endpoint.ready is not False and endpoint.node_name
    }
    without = sorted(node.meta.name for node in nodes if node.meta.name not in local)
    port = f" (healthCheckNodePort {service.health_check_node_port})" if service.health_check_node_port else ""
    if not without:
        return CheckResult(
            Check.TRAFFIC_POLICY,
            Status.OK,
            None,
            ref,
            f"every eligible node has a ready local endpoint{port}",
        )
    shown = ", ".join(without[:5]) + (f" and {len(without) - 5} more" if len(without) > 5 else "")
    status = Status.FAIL if len(without) == len(nodes) else Status.WARN
    return CheckResult(
        Check.TRAFFIC_POLICY,
        status,
        Reason.EXTERNAL_TRAFFIC_POLICY_LOCAL,
        ref,
        f"Service {service.meta.key} has externalTrafficPolicy Local with instance targets: the health check"
        f"{port} fails on {len(without)} of {len(nodes)} nodes that run no ready pod of it ({shown})",
        "expected with Local: the LB only sends to nodes with a pod. To have every node healthy use "
        "externalTrafficPolicy: Cluster (the client IP is then lost) or ip targets "
        "(service.beta.kubernetes.io/aws-load-balancer-nlb-target-type: ip)",
        # The instance targets on these nodes fail by design: the causal rules name this as their cause.
        about=(subjects.service(namespace, name), *(subjects.service_node(namespace, name, n) for n in without)),
    )
