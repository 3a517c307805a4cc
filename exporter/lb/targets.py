"""The pods on one node that sit behind a load balancer, and how to probe each the way the LB does."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.lb import annotations as ann
from exporter.lb.backends import Backend, LbPlan
from exporter.lb.healthcheck import ALB, INSTANCE, IPV6, HealthCheckSpec, instance_ports
from exporter.lb.thresholds import PredictedHealth, Thresholds
from exporter.model.objects import Pod, Service, ServicePort
from exporter.model.probe import ELB_USER_AGENT, ProbeOutcome, ProbeRequest
from exporter.model.results import ObjectRef, TargetRef
from exporter.model.snapshot import ClusterSnapshot


@dataclass(frozen=True, slots=True)
class ProbeDefaults:
    user_agent: str = ELB_USER_AGENT
    body_limit: int = 16 * 1024
    node_path: bool = True  # also probe instance targets at NODE_IP:nodePort, through kube-proxy


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """A pod probed on behalf of one target group. ``key`` (its metric labels) is its identity: the owner of
    the target group (the Ingress, NLB Service or TargetGroupBinding) is part of it, so one Service behind
    two load balancers whose health checks differ is probed once for each, and each gets its own verdict.

    Instance targets are also probed the way the LB reaches them, through kube-proxy on this node:
    ``NODE_IP:nodePort`` (or ``healthCheckNodePort`` with externalTrafficPolicy Local). Such a
    node-path target has ``pod`` empty and ``port`` the node port.
    """

    owner: ObjectRef
    namespace: str
    service: str
    pod: str
    node: str
    lb: str
    request: ProbeRequest
    interval: float
    healthy_threshold: int
    unhealthy_threshold: int
    supported: bool = True  # False: a health check lbdoctor cannot speak; reported as unknown
    target_type: str = "ip"  # the target group's: ip | instance

    @property
    def owner_label(self) -> str:
        """The ``owner`` label: ``ingress/NAME``, ``service/NAME`` or ``targetgroupbinding/NAME`` (the namespace
        is the ``namespace`` label); at most 272 characters, as Kubernetes names are at most 253."""
        return f"{self.owner.kind.lower()}/{self.owner.name}"

    @property
    def labels(self) -> tuple[str, str, str, str, str, str, str, str]:
        """namespace, service, pod, node, lb, port, path, owner"""
        path = self.request.path if self.request.protocol != "TCP" else ""
        request = self.request
        return (self.namespace, self.service, self.pod, self.node, self.lb, str(request.port), path, self.owner_label)

    @property
    def key(self) -> tuple[str, ...]:
        """The target's identity (the scheduler keys by it): one per target group, pod and probed port/path."""
        return self.labels

    @property
    def thresholds(self) -> Thresholds:
        first = 1 if self.lb == ALB else self.healthy_threshold
        return Thresholds(self.healthy_threshold, self.unhealthy_threshold, first)

    @property
    def ref(self) -> TargetRef:
        return TargetRef(pod=self.pod or None, ip=self.request.ip, port=self.request.port)

    @property
    def node_path(self) -> bool:
        """Probed through kube-proxy on the node (instance targets), not at a pod."""
        return not self.pod


@dataclass(frozen=True, slots=True)
class Placement:
    """A pod on this node behind one target group."""

    backend: Backend
    pod: Pod


@dataclass(frozen=True, slots=True)
class NodeTargets:
    targets: tuple[ProbeTarget, ...]
    placements: tuple[Placement, ...]


@dataclass(frozen=True, slots=True)
class TargetStatus:
    """What lbdoctor knows of one target: its last outcome and the LB's verdict by its thresholds."""

    target: ProbeTarget
    outcome: ProbeOutcome | None = None
    probed_at: float | None = None  # wall-clock time the last probe started
    health: PredictedHealth = field(default_factory=PredictedHealth)
    last_failure: ProbeOutcome | None = None
    flips: tuple[float, ...] = ()  # wall-clock times of the most recent healthy/unhealthy transitions

    def flips_since(self, moment: float) -> int:
        return sum(1 for flip in self.flips if flip >= moment)


def node_targets(
    plan: LbPlan, snapshot: ClusterSnapshot, node: str, defaults: ProbeDefaults = ProbeDefaults()
) -> NodeTargets:
    """Every target group's targets on this node. Two target groups are probed apart even when their health
    checks are identical (each load balancer sends its own checks, and their thresholds and verdicts are
    kept apart); two backends of one owner that land on the same pod port and path are one target."""
    targets: dict[tuple[str, ...], ProbeTarget] = {}
    placements: list[Placement] = []
    node_object = snapshot.nodes.get(node)
    for backend in plan.backends:
        if backend.service is None or backend.service_port is None or backend.resolution is None:
            continue
        spec = backend.resolution.spec
        node_ip = node_object.internal_ip_of(spec.ip_address_type == IPV6) if node_object is not None else None
        pods = list(_pods_on_node(backend.service, snapshot, node))
        if spec.target_type == INSTANCE and node_ip and defaults.node_path:
            via_node = _node_path_target(backend, spec, node, node_ip, bool(pods), defaults)
            if via_node is not None:
                targets.setdefault(via_node.key, via_node)
        for pod in pods:
            placements.append(Placement(backend, pod))
            if spec.node_health_check:
                continue  # the LB asks kube-proxy on the node, not the pod: the node-path target covers it
            target = _target_for(backend, spec, pod, node, defaults)
            if target is not None:
                targets.setdefault(target.key, target)
    return NodeTargets(targets=tuple(targets.values()), placements=tuple(placements))


def node_port_of(spec: HealthCheckSpec, service: Service, service_port: ServicePort) -> int | None:
    """The node port an instance target's health check lands on, or None when there is none."""
    if spec.node_health_check:
        return service.health_check_node_port
    if spec.port == ann.TRAFFIC_PORT:
        return service_port.node_port
    if isinstance(spec.port, int):
        return spec.port  # a fixed port on the instance
    named = service.port_named(spec.port)
    return named.node_port if named is not None else None


def _node_path_target(
    backend: Backend, spec: HealthCheckSpec, node: str, node_ip: str, local_pods: bool, defaults: ProbeDefaults
) -> ProbeTarget | None:
    """The health check as an instance target gets it: at this node's address, through kube-proxy."""
    service, service_port = backend.service, backend.service_port
    assert service is not None
    assert service_port is not None
    if service.external_traffic_policy == "Local" and not local_pods:
        # By design kube-proxy drops (or its /healthz answers 503) on nodes without a local endpoint,
        # and the LB takes such nodes out of service: that is the traffic_policy check's story, not a fault.
        return None
    port = node_port_of(spec, service, service_port)
    if port is None:
        return None  # no NodePort: the annotation checks report InstanceTargetNeedsNodePort
    if port not in instance_ports(service):
        return None  # not the Service's port on the node (the kubelet's, say): never probed, whoever asks
    return _probe_target(backend, spec, service, node_ip, port, "", node, defaults)


def _pods_on_node(service: Service, snapshot: ClusterSnapshot, node: str) -> Iterable[Pod]:
    if service.selector:
        return (pod for pod in snapshot.selected_pods(service) if pod.node_name == node)
    # Selector-less Service: the pods are whatever its (manual) EndpointSlices point at.
    names = {
        endpoint.pod_name
        for eps in snapshot.slices_of(service)
        for endpoint in eps.endpoints
        if endpoint.pod_name and endpoint.node_name == node
    }
    found = (snapshot.pods.get(f"{service.meta.namespace}/{name}") for name in names)
    return (pod for pod in found if pod is not None and pod.node_name == node)


def _target_for(
    backend: Backend, spec: HealthCheckSpec, pod: Pod, node: str, defaults: ProbeDefaults
) -> ProbeTarget | None:
    service, service_port = backend.service, backend.service_port
    assert service is not None
    assert service_port is not None
    # An IPv6 target group registers, and checks, the pod's IPv6 address.
    ip = pod.ip_of_family(spec.ip_address_type == IPV6)
    if ip is None and not service.ip_families:
        ip = pod.pod_ip  # a Service object without spec.ipFamilies (an old API server): its one address
    if not ip:
        return None  # nothing to probe; the pod_status check says why (or the pod lacks the family's address)
    if spec.target_type == INSTANCE and isinstance(spec.port, int) and spec.port not in instance_ports(service):
        return None  # a port on the node that is not the Service's: no pod behind it to probe
    port = probe_port(spec, service, service_port, pod)
    if isinstance(port, str):
        return None  # a named port the pod lacks: the target_port check says so
    return _probe_target(backend, spec, service, ip, port, pod.meta.name, node, defaults)


def _probe_target(
    backend: Backend,
    spec: HealthCheckSpec,
    service: Service,
    ip: str,
    port: int,
    pod: str,
    node: str,
    defaults: ProbeDefaults,
) -> ProbeTarget | None:
    """The health check of ``spec`` sent to ``ip:port``: a pod (``pod`` its name) or a node path (``pod`` "").
    None for a path AWS would not accept: whatever its source, it never reaches a request line."""
    path = spec.path or "/"
    if ann.health_check_path_problem(path) is not None:
        return None
    request = ProbeRequest(
        protocol=spec.protocol,
        ip=ip,
        port=port,
        timeout=float(spec.timeout),
        path=path,
        success_ranges=spec.success_codes.ranges if spec.success_codes else ((200, 399),),
        user_agent=defaults.user_agent,
        body_limit=defaults.body_limit,
        protocol_version=spec.protocol_version if spec.lb == ALB else "HTTP1",
    )
    return ProbeTarget(
        owner=backend.owner,
        namespace=service.meta.namespace,
        service=service.meta.name,
        pod=pod,
        node=node,
        lb=spec.lb,
        request=request,
        interval=float(spec.interval),
        healthy_threshold=spec.healthy_threshold,
        unhealthy_threshold=spec.unhealthy_threshold,
        target_type=spec.target_type,
    )


def probe_port(spec: HealthCheckSpec, service: Service, service_port: ServicePort, pod: Pod) -> int | str:
    """The pod port the health check lands on; a string is a named port the pod does not have."""
    port = spec.port
    if port == ann.TRAFFIC_PORT:
        return resolve_target_port(service_port.target_port, pod)
    if isinstance(port, str):
        named = service.port_named(port)
        return resolve_target_port(named.target_port, pod) if named else port
    if spec.target_type == INSTANCE:
        # A fixed port on an instance target is a node port; map it back to the pod behind it.
        for candidate in service.ports:
            if candidate.node_port == port:
                return resolve_target_port(candidate.target_port, pod)
    return port


def resolve_target_port(target_port: int | str, pod: Pod) -> int | str:
    if isinstance(target_port, int):
        return target_port
    named = pod.port_named(target_port)
    return named.container_port if named else target_port
