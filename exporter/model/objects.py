"""Typed views of the Kubernetes objects the checks read.

Adapters convert API JSON into these; nothing here knows where the data came from. Mappings are
treated as read-only by convention (the builders never share them with a writer).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

EMPTY: Mapping[str, str] = {}


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    deleting: bool = False
    # metadata.deletionTimestamp as Unix time: for a pod, when its grace period ends and the kubelet kills it
    deletion_deadline: float | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class ContainerPort:
    name: str | None
    container_port: int
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    name: str
    ready: bool
    restart_count: int = 0
    waiting_reason: str | None = None
    waiting_message: str | None = None
    terminated_reason: str | None = None
    last_terminated_reason: str | None = None


@dataclass(frozen=True, slots=True)
class PodCondition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None  # RFC 3339, as the API server gives it


@dataclass(frozen=True, slots=True)
class PreStopHook:
    """A container's lifecycle.preStop, as far as the rollout check needs it."""

    container: str
    action: str  # sleep | exec | httpGet | tcpSocket
    seconds: float | None = None  # how long it delays SIGTERM, when known (a sleep action, or exec `sleep N`)


@dataclass(frozen=True, slots=True)
class Pod:
    meta: ObjectMeta
    node_name: str | None
    phase: str
    pod_ip: str | None
    ports: tuple[ContainerPort, ...] = ()
    container_statuses: tuple[ContainerStatus, ...] = ()
    conditions: tuple[PodCondition, ...] = ()  # the conditions of its readiness gates (the only ones read)
    readiness_gates: tuple[str, ...] = ()
    host_network: bool = False
    pod_ips: tuple[str, ...] = ()  # status.podIPs of a dual-stack pod (IPv4 and IPv6); empty: just pod_ip
    termination_grace: int = 30  # spec.terminationGracePeriodSeconds
    pre_stop: tuple[PreStopHook, ...] = ()  # the containers' preStop hooks (containers without one: absent)
    created: str | None = None  # creationTimestamp (RFC 3339); kept only for pods with readiness gates

    def ip_of_family(self, ipv6: bool) -> str | None:
        """The pod's address of one family (an IPv6 target group registers the IPv6 one)."""
        for ip in self.pod_ips or ((self.pod_ip,) if self.pod_ip else ()):
            if (":" in ip) == ipv6:
                return ip
        return None

    def condition(self, kind: str) -> PodCondition | None:
        for cond in self.conditions:
            if cond.type == kind:
                return cond
        return None

    def port_named(self, name: str) -> ContainerPort | None:
        for port in self.ports:
            if port.name == name:
                return port
        return None

    def exposes(self, number: int) -> bool:
        return any(p.container_port == number for p in self.ports)


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str | None
    port: int
    target_port: int | str  # a number, or the name of a container port
    protocol: str = "TCP"
    node_port: int | None = None
    app_protocol: str | None = None

    @property
    def label(self) -> str:
        return self.name or str(self.port)


@dataclass(frozen=True, slots=True)
class Service:
    meta: ObjectMeta
    type: str  # ClusterIP | NodePort | LoadBalancer | ExternalName
    selector: Mapping[str, str] | None  # None: the Service has no selector (manual EndpointSlices)
    ports: tuple[ServicePort, ...] = ()
    cluster_ip: str | None = None
    external_traffic_policy: str = "Cluster"
    health_check_node_port: int | None = None
    load_balancer_class: str | None = None
    allocate_node_ports: bool = True
    cluster_ips: tuple[str, ...] = ()  # every family's ClusterIP (spec.clusterIPs); empty: use cluster_ip
    internal_traffic_policy: str = "Cluster"
    ip_families: tuple[str, ...] = ()  # spec.ipFamilies: IPv4, IPv6
    lb_addresses: tuple[str, ...] = ()  # status.loadBalancer.ingress: hostnames or IPs the LB got

    @property
    def ipv6(self) -> bool:
        """Whether the controllers give its target groups the IPv6 address type (any IPv6 family does)."""
        return "IPv6" in self.ip_families

    def port_named(self, name: str) -> ServicePort | None:
        for port in self.ports:
            if port.name == name:
                return port
        return None

    def port_numbered(self, number: int) -> ServicePort | None:
        for port in self.ports:
            if port.port == number:
                return port
        return None


@dataclass(frozen=True, slots=True)
class EndpointPort:
    name: str | None
    port: int | None
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class Endpoint:
    addresses: tuple[str, ...]
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None
    node_name: str | None = None
    pod_name: str | None = None
    zone: str | None = None
    hint_zones: tuple[str, ...] | None = None  # hints.forZones; None when the endpoint has no zone hints
    hint_nodes: tuple[str, ...] | None = None  # hints.forNodes


class EndpointSlice:
    """An EndpointSlice, its endpoints packed: every node agent keeps every slice of the cluster (kube-proxy
    programs every Service on every node), 100,000 endpoints in a big cluster. As objects they cost ~430
    bytes each; packed into a few strings and tuples per slice, ~40. ``endpoints`` unpacks them on each
    access (the checks read a Service's few slices; the kube-proxy comparison reads all of them every
    ``kube_proxy_interval_seconds``). Immutable, like the other model objects."""

    __slots__ = ("_conditions", "_extra", "_nodes", "_text", "address_type", "meta", "ports", "service_name")

    meta: ObjectMeta
    service_name: str | None
    address_type: str
    ports: tuple[EndpointPort, ...]
    _text: str
    _nodes: tuple[str | None, ...]
    _conditions: bytes
    _extra: tuple[tuple[str | None, tuple[str, ...] | None, tuple[str, ...] | None] | None, ...] | None

    def __init__(
        self,
        meta: ObjectMeta,
        service_name: str | None,
        address_type: str,
        endpoints: Iterable[Endpoint] = (),
        ports: tuple[EndpointPort, ...] = (),
    ) -> None:
        set_ = object.__setattr__
        set_(self, "meta", meta)
        set_(self, "service_name", service_name)
        set_(self, "address_type", address_type)
        set_(self, "ports", tuple(ports))
        lines: list[str] = []
        nodes: list[str | None] = []
        conditions = bytearray()
        extra: list[tuple[str | None, tuple[str, ...] | None, tuple[str, ...] | None] | None] = []
        for endpoint in endpoints:
            # One line per endpoint: its addresses (space-separated), a tab, its pod's name ("\x00": none). The
            # API server validates both; whatever a fake or a bug sends, a separator never gets in: an address
            # holding one is no address, a name's is replaced.
            addresses = " ".join(a for a in endpoint.addresses if not _SEPARATORS.intersection(a))
            pod = _NONE if endpoint.pod_name is None else _SEPARATORS_OUT.sub("\ufffd", endpoint.pod_name)
            lines.append(f"{addresses}\t{pod}")
            nodes.append(sys.intern(endpoint.node_name) if endpoint.node_name else endpoint.node_name)
            conditions.append(_TRI[endpoint.ready] | _TRI[endpoint.serving] << 2 | _TRI[endpoint.terminating] << 4)
            rare = (endpoint.zone, endpoint.hint_zones, endpoint.hint_nodes)
            extra.append(None if rare == (None, None, None) else rare)
        set_(self, "_text", "\n".join(lines))
        set_(self, "_nodes", tuple(nodes))
        set_(self, "_conditions", bytes(conditions))
        set_(self, "_extra", tuple(extra) if any(e is not None for e in extra) else None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"EndpointSlice is immutable: cannot set {name}")

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        if not self._nodes:
            return ()
        extra = self._extra
        found = []
        for index, (line, node, bits) in enumerate(
            zip(self._text.split("\n"), self._nodes, self._conditions, strict=True)
        ):
            addresses, _, pod = line.partition("\t")
            rare = extra[index] if extra is not None else None
            zone, hint_zones, hint_nodes = rare if rare is not None else (None, None, None)
            found.append(
                Endpoint(
                    addresses=tuple(addresses.split(" ")) if addresses else (),
                    ready=_UNTRI[bits & 3],
                    serving=_UNTRI[bits >> 2 & 3],
                    terminating=_UNTRI[bits >> 4 & 3],
                    node_name=node,
                    pod_name=None if pod == _NONE else pod,
                    zone=zone,
                    hint_zones=hint_zones,
                    hint_nodes=hint_nodes,
                )
            )
        return tuple(found)

    def _key(self) -> tuple[object, ...]:
        return (
            self.meta,
            self.service_name,
            self.address_type,
            self.ports,
            self._text,
            self._nodes,
            self._conditions,
            self._extra,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndpointSlice) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.meta.key, self._text))

    def __repr__(self) -> str:
        return (
            f"EndpointSlice(meta={self.meta!r}, service_name={self.service_name!r}, "
            f"address_type={self.address_type!r}, endpoints={self.endpoints!r}, ports={self.ports!r})"
        )


_NONE = "\x00"  # no pod named
_SEPARATORS = frozenset(" \t\n\x00")
_SEPARATORS_OUT = re.compile("[\t\n\x00]")
_TRI: dict[bool | None, int] = {None: 0, False: 1, True: 2}
_UNTRI: tuple[bool | None, ...] = (None, False, True, None)


@dataclass(frozen=True, slots=True)
class IngressBackend:
    """One path of an Ingress rule (or its default backend) pointing at a Service port."""

    service_name: str
    port_number: int | None
    port_name: str | None
    host: str | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True)
class Ingress:
    meta: ObjectMeta
    class_name: str | None
    backends: tuple[IngressBackend, ...] = ()
    lb_addresses: tuple[str, ...] = ()  # status.loadBalancer.ingress


@dataclass(frozen=True, slots=True)
class IngressClass:
    meta: ObjectMeta
    controller: str
    is_default: bool = False
    parameters: tuple[str, str, str] | None = None  # spec.parameters: (apiGroup, kind, name)


@dataclass(frozen=True, slots=True)
class TargetGroupBinding:
    meta: ObjectMeta
    target_group_arn: str | None
    target_type: str | None
    service_name: str
    service_port: int | str


@dataclass(frozen=True, slots=True)
class Deployment:
    meta: ObjectMeta
    replicas: int
    ready_replicas: int
    available_replicas: int
    selector: Mapping[str, str] = field(default_factory=dict)
    images: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class KubeEvent:
    """A Warning Event about an object (only the reasons lbdoctor acts on are kept)."""

    meta: ObjectMeta
    object_kind: str
    object_namespace: str
    object_name: str
    reason: str
    message: str
    type: str = "Warning"
    count: int = 1
    last_seen: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class NodeAddress:
    type: str
    address: str


@dataclass(frozen=True, slots=True)
class Node:
    meta: ObjectMeta
    addresses: tuple[NodeAddress, ...] = ()
    ready: bool = True
    provider_id: str | None = None

    @property
    def internal_ip(self) -> str | None:
        for addr in self.addresses:
            if addr.type == "InternalIP":
                return addr.address
        return None

    def internal_ip_of(self, ipv6: bool) -> str | None:
        """The node's InternalIP of one address family (an IPv6 target group checks instances over IPv6)."""
        for addr in self.addresses:
            if addr.type == "InternalIP" and (":" in addr.address) == ipv6:
                return addr.address
        return None


@dataclass(frozen=True, slots=True)
class AgentPod:
    """A pod as the cluster role sees a node agent: where it runs and which object controls it."""

    meta: ObjectMeta
    node_name: str | None
    pod_ip: str | None
    controller_kind: str | None  # the ownerReference marked controller: true, if any
    controller_name: str | None
