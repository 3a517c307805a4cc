"""Tie what AWS says to the cluster: which object owns a target group, which pod or node a target is.

Pure. The owner is the object the node role reports ``health_probe`` for (the NLB Service, the ALB
Ingress, or the TargetGroupBinding of a target group the controller did not create), so the two
roles' results for one load balancer meet on the same ``lbdoctor_check_status`` object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from exporter.aws.ids import instance_id_of, normalise_ip
from exporter.aws.model import TargetGroup, TargetHealth
from exporter.lb.aws_settings import port_matches
from exporter.lb.healthcheck import ALB
from exporter.lb.plan import Backend, LbPlan
from exporter.model.objects import Node, Pod, TargetGroupBinding
from exporter.model.results import ObjectRef, TargetRef
from exporter.model.snapshot import ClusterSnapshot

SERVICE_STACK = "service.k8s.aws/stack"
INGRESS_STACK = "ingress.k8s.aws/stack"
SERVICE_RESOURCE = "service.k8s.aws/resource"
INGRESS_RESOURCE = "ingress.k8s.aws/resource"
# Gateway API target groups: tagged per Gateway (the stack), with a resource id naming the route and Service.
GATEWAY_PREFIXES = ("gateway.k8s.aws.alb", "gateway.k8s.aws.nlb")


@dataclass(frozen=True, slots=True)
class GroupOwner:
    """A target group as the cluster sees it."""

    arn: str
    name: str
    owner: ObjectRef
    namespace: str
    service: str  # the Service behind the target group ("" when unknown)
    service_port: int | str | None
    binding: TargetGroupBinding | None
    backend: Backend | None  # the plan's backend: the health check the annotations ask for


@dataclass(frozen=True, slots=True)
class TargetPlace:
    """Where an ELB target lives in the cluster."""

    ip: str | None  # the address the LB sends to
    pod: Pod | None = None
    node: Node | None = None

    def ref(self, port: int | None) -> TargetRef:
        return TargetRef(pod=self.pod.meta.name if self.pod else None, ip=self.ip, port=port)

    def describe(self, target: TargetHealth) -> str:
        host = f"[{target.id}]" if ":" in target.id else target.id
        where = f"{host}:{target.port}" if target.port is not None else target.id
        if self.pod is not None:
            return f"pod {self.pod.meta.name} ({where})"
        if self.node is not None:
            return f"node {self.node.meta.name} ({where})"
        return f"target {where}"


class ClusterIndex:
    """Lookups built once per evaluation: pods by IP, nodes by instance id, bindings by ARN."""

    def __init__(self, snapshot: ClusterSnapshot, plan: LbPlan) -> None:
        self.snapshot = snapshot
        self.plan = plan

    @cached_property
    def pods_by_ip(self) -> Mapping[str, tuple[Pod, ...]]:
        found: dict[str, list[Pod]] = {}
        for pod in self.snapshot.pods.values():
            if pod.host_network:
                continue
            # Every family's address: an IPv6 target group registers the pod's IPv6 one.
            for ip in pod.pod_ips or ((pod.pod_ip,) if pod.pod_ip else ()):
                found.setdefault(normalise_ip(ip), []).append(pod)
        return {ip: tuple(pods) for ip, pods in found.items()}

    @cached_property
    def nodes_by_instance(self) -> Mapping[str, Node]:
        return {i: node for node in self.snapshot.nodes.values() if (i := instance_id_of(node.provider_id))}

    @cached_property
    def nodes_by_ip(self) -> Mapping[str, Node]:
        return {
            normalise_ip(address.address): node
            for node in self.snapshot.nodes.values()
            for address in node.addresses
            if address.type == "InternalIP"
        }

    @cached_property
    def bindings_by_arn(self) -> Mapping[str, TargetGroupBinding]:
        found: dict[str, TargetGroupBinding] = {}
        for binding in sorted(self.snapshot.target_group_bindings.values(), key=lambda b: b.meta.key):
            if binding.target_group_arn:
                found.setdefault(binding.target_group_arn, binding)
        return found

    def owner_of(self, arn: str, group: TargetGroup | None) -> GroupOwner:
        tags: Mapping[str, str] = group.tags if group is not None else {}
        name = group.name if group is not None else arn.rsplit("/", 2)[-2] if arn.count("/") >= 2 else arn
        binding = self.bindings_by_arn.get(arn)
        labels: Mapping[str, str] = binding.meta.labels if binding is not None else {}
        service_stack = tags.get(SERVICE_STACK) or _joined(labels, "service.k8s.aws")
        ingress_stack = tags.get(INGRESS_STACK) or _joined(labels, "ingress.k8s.aws") or labels.get(INGRESS_STACK)
        gateway_stack, gateway_resource = None, None
        for prefix in GATEWAY_PREFIXES:
            gateway_stack = gateway_stack or tags.get(f"{prefix}/stack") or _joined(labels, prefix)
            gateway_resource = gateway_resource or tags.get(f"{prefix}/resource")
        port: int | str | None = binding.service_port if binding is not None else None
        service = binding.service_name if binding is not None else ""
        if gateway_stack and "/" in gateway_stack:
            owner, found_service, found_port = self._route_owner(gateway_stack, gateway_resource)
            namespace = owner.namespace
            service = service or found_service
            port = port if port is not None else found_port
        elif service_stack and "/" in service_stack:
            namespace, service_name = service_stack.split("/", 1)
            owner = ObjectRef("Service", namespace, service_name)
            service = service or service_name
            if port is None:
                port = _resource_port(tags.get(SERVICE_RESOURCE))
        elif ingress_stack:
            namespace = binding.meta.namespace if binding is not None else ""
            if "/" in ingress_stack:
                namespace, ingress = ingress_stack.split("/", 1)
                owner = ObjectRef("Ingress", namespace, ingress)
                if not service:
                    service, port = _ingress_resource(tags.get(INGRESS_RESOURCE), namespace, ingress)
            else:
                owner = self._group_owner(ingress_stack, namespace, service, port)
        elif binding is not None:
            namespace = binding.meta.namespace
            owner = ObjectRef("TargetGroupBinding", namespace, binding.meta.name)
        else:
            namespace = ""
            owner = ObjectRef("TargetGroup", "", name)
        backend = self._backend(owner, service, port)
        return GroupOwner(arn, name, owner, owner.namespace or namespace, service, port, binding, backend)

    def _route_owner(self, stack: str, resource: str | None) -> tuple[ObjectRef, str, int | str | None]:
        """A Gateway target group's route, Service and port, from the controller's resource id
        ``gwns/gw:routens-route:Kind-svcns-svc:port``, matched against the planned routes (names may hold
        dashes, so the parts are compared, not split)."""
        namespace, _, name = stack.partition("/")
        gateway = ObjectRef("Gateway", namespace, name)
        parts = (resource or "").split(":")
        if len(parts) == 4 and parts[0] == stack:
            route_part, kind_service, port_text = parts[1], parts[2], parts[3]
            for backend in self.plan.backends:
                service = backend.service
                if backend.gateway != gateway or service is None:
                    continue
                kind = backend.owner.kind
                if (
                    route_part == f"{backend.owner.namespace}-{backend.owner.name}"
                    and kind_service == f"{kind}-{service.meta.namespace}-{service.meta.name}"
                ):
                    port: int | str = int(port_text) if port_text.isdigit() else port_text
                    return backend.owner, service.meta.name, port
        return gateway, "", None

    def _group_owner(self, group: str, namespace: str, service: str, port: int | str | None) -> ObjectRef:
        """An IngressGroup's target group: the Ingress of the group that routes to this Service port."""
        for backend in self.plan.backends:
            if (
                backend.lb == ALB
                and backend.owner.namespace == namespace
                and backend.service is not None
                and backend.service.meta.name == service
                and backend.service_port is not None
                and port_matches(backend.service_port, port)
            ):
                return backend.owner
        return ObjectRef("IngressGroup", namespace, group)

    def _backend(self, owner: ObjectRef, service: str, port: int | str | None) -> Backend | None:
        for backend in self.plan.backends:
            if backend.owner != owner:
                continue
            if backend.service is None or backend.service_port is None:
                continue
            if backend.service.meta.name == service and port_matches(backend.service_port, port):
                return backend
        return None

    def place(self, group: TargetGroup | None, target: TargetHealth, namespace: str) -> TargetPlace:
        instance_target = target.id.startswith("i-") and (group is None or group.target_type == "instance")
        if instance_target:
            node = self.nodes_by_instance.get(target.id)
            return TargetPlace(ip=node.internal_ip if node else None, node=node)
        ip = normalise_ip(target.id)
        pods = self.pods_by_ip.get(ip, ())
        pod = next((p for p in pods if p.meta.namespace == namespace), pods[0] if pods else None)
        node = self.snapshot.nodes.get(pod.node_name) if pod is not None and pod.node_name else None
        return TargetPlace(ip=ip, pod=pod, node=node or self.nodes_by_ip.get(ip))


def _joined(labels: Mapping[str, str], prefix: str) -> str | None:
    namespace, name = labels.get(f"{prefix}/stack-namespace"), labels.get(f"{prefix}/stack-name")
    return f"{namespace}/{name}" if namespace and name else None


def _resource_port(resource: str | None) -> int | str | None:
    if not resource or ":" not in resource:
        return None
    text = resource.rsplit(":", 1)[1]
    return int(text) if text.isdigit() else text


def _ingress_resource(resource: str | None, namespace: str, ingress: str) -> tuple[str, int | str | None]:
    """``ns/ing-svc:port`` -> (svc, port); the Ingress name is known, so the dash is unambiguous."""
    prefix = f"{namespace}/{ingress}-"
    if not resource or not resource.startswith(prefix) or ":" not in resource:
        return "", None
    service, _, _ = resource[len(prefix) :].rpartition(":")
    return service, _resource_port(resource)
