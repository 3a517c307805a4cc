"""What kube-proxy should have programmed on one node, computed from the API as kube-proxy computes it.

docs/kube-proxy.md §5.1 (which Services are proxied) and §5.2 (which endpoints: ready ones, else
serving-and-terminating ones; Local policies keep this node's; topology hints may narrow the set).
Pure: a snapshot and a node in, an ``ExpectedState`` out.

Where lbdoctor cannot know what kube-proxy knows (this node's zone, when the Node object is not
readable), an endpoint set is given as *required* (must be programmed) and *allowed* (may be):
missing = required - programmed, stale = programmed - allowed. Nothing is then reported that
kube-proxy might legitimately have done.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from exporter.dataplane.names import ServicePortName
from exporter.model.objects import Endpoint, EndpointSlice, Node, Service, ServicePort
from exporter.model.snapshot import ClusterSnapshot

IPV4, IPV6 = "IPv4", "IPv6"
ZONE_LABEL = "topology.kubernetes.io/zone"
# Services (and their slices) with these labels are programmed by another proxy, or not at all.
NOT_PROXIED_LABELS = ("service.kubernetes.io/service-proxy-name", "service.kubernetes.io/headless")
# kube-proxy drops rule comments above this many endpoints (docs/kube-proxy.md §5.3, "large-cluster mode").
LARGE_CLUSTER_ENDPOINTS = 1000
PROTOCOLS = ("tcp", "udp", "sctp")

EndpointKey = tuple[str, int]  # (ip, port)


def canonical_ip(ip: str) -> str:
    """IPv6 addresses in one spelling (``fd00::1``), so the API and iptables-save compare equal."""
    if ":" not in ip:
        return ip
    try:
        return ipaddress.ip_address(ip).compressed
    except ValueError:
        return ip


def family_of(ip: str) -> str:
    return IPV6 if ":" in ip else IPV4


@dataclass(frozen=True, slots=True)
class EndpointSet:
    required: frozenset[EndpointKey] = frozenset()
    allowed: frozenset[EndpointKey] = frozenset()

    @classmethod
    def exactly(cls, keys: Iterable[EndpointKey]) -> EndpointSet:
        chosen = frozenset(keys)
        return cls(chosen, chosen)


@dataclass(frozen=True, slots=True)
class ExpectedPort:
    """One Service port in one IP family, and what this node's kube-proxy must program for it."""

    spn: ServicePortName
    family: str
    cluster_ip: str
    port: int
    node_port: int | None
    health_check_node_port: int | None
    internal_local: bool  # internalTrafficPolicy: Local
    external_local: bool  # externalTrafficPolicy: Local (and reachable from outside)
    cluster: EndpointSet  # the Cluster-policy chain (KUBE-SVC- / service-)
    local: EndpointSet  # the Local-policy chain (KUBE-SVL- / local-)
    pods: Mapping[EndpointKey, str] = field(default_factory=dict)  # endpoint → pod name, for messages
    nodes: Mapping[EndpointKey, str] = field(default_factory=dict)  # endpoint → node name
    topology: str = ""  # "", "zone", "node" or "unknown": how hints narrowed the Cluster set

    @property
    def externally_accessible(self) -> bool:
        # A NodePort is what the AWS load balancers use; external IPs and LB ingress IPs are not modelled.
        return self.node_port is not None

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_local or (self.externally_accessible and not self.external_local)

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_local or (self.externally_accessible and self.external_local)

    @property
    def internal(self) -> EndpointSet:
        """Endpoints ClusterIP traffic goes to."""
        return self.local if self.internal_local else self.cluster

    @property
    def external(self) -> EndpointSet:
        """Endpoints NodePort traffic (an instance target's health check) goes to."""
        return self.local if self.external_local else self.cluster

    @property
    def any_allowed(self) -> bool:
        return bool(self.cluster.allowed or self.local.allowed)

    @property
    def any_required(self) -> bool:
        return bool(self.cluster.required or self.local.required)


@dataclass(frozen=True)
class ExpectedState:
    node: str
    zone: str | None
    node_addresses: frozenset[str]
    ports: tuple[ExpectedPort, ...]
    endpoints: int  # endpoints programmed across all Services: above 1000, comments are dropped

    @property
    def large_cluster(self) -> bool:
        return self.endpoints > LARGE_CLUSTER_ENDPOINTS

    def family(self, family: str) -> tuple[ExpectedPort, ...]:
        return tuple(port for port in self.ports if port.family == family)


def is_proxied(service: Service) -> bool:
    if service.type == "ExternalName":
        return False
    if any(label in service.meta.labels for label in NOT_PROXIED_LABELS):
        return False
    return any(ip and ip != "None" for ip in (*service.cluster_ips, service.cluster_ip or ""))


def cluster_ips(service: Service) -> list[str]:
    found = service.cluster_ips or ((service.cluster_ip,) if service.cluster_ip else ())
    return [canonical_ip(ip) for ip in found if ip and ip != "None"]


@dataclass(slots=True)
class _Candidate:
    ip: str
    port: int
    ready: bool
    serving: bool
    terminating: bool
    local: bool
    node: str | None
    pod: str | None
    hint_zones: tuple[str, ...] | None
    hint_nodes: tuple[str, ...] | None


def _candidates(
    slices: Iterable[EndpointSlice], port: ServicePort, family: str, node: str
) -> dict[EndpointKey, _Candidate]:
    """Every endpoint of the Service port in one family, deduplicated as kube-proxy does (by ip:port,
    a non-terminating copy winning)."""
    found: dict[EndpointKey, _Candidate] = {}
    for eps in slices:
        if eps.address_type != family or any(label in eps.meta.labels for label in NOT_PROXIED_LABELS):
            continue
        for slice_port in eps.ports:
            if slice_port.port is None or slice_port.port <= 0:
                continue
            if (slice_port.name or "") != (port.name or "") or slice_port.protocol.upper() != port.protocol.upper():
                continue
            for endpoint in eps.endpoints:
                candidate = _candidate(endpoint, slice_port.port, node)
                if candidate is None:
                    continue
                key = (candidate.ip, candidate.port)
                existing = found.get(key)
                if existing is None or (existing.terminating and not candidate.terminating):
                    found[key] = candidate
    return found


def _candidate(endpoint: Endpoint, port: int, node: str) -> _Candidate | None:
    if not endpoint.addresses:
        return None
    terminating = endpoint.terminating is True
    return _Candidate(
        ip=canonical_ip(endpoint.addresses[0]),  # kube-proxy uses the first address only
        port=port,
        ready=endpoint.ready is not False,
        serving=endpoint.serving is not False,
        terminating=terminating,
        local=endpoint.node_name == node,
        node=endpoint.node_name,
        pod=endpoint.pod_name,
        hint_zones=endpoint.hint_zones,
        hint_nodes=endpoint.hint_nodes,
    )


def _topology(ready: list[_Candidate], node: str, zone: str | None) -> str:
    """Which hints kube-proxy honours: all ready endpoints must carry one, and one must match."""
    if not ready:
        return ""
    if all(c.hint_nodes for c in ready) and any(node in (c.hint_nodes or ()) for c in ready):
        return "node"
    if all(c.hint_zones for c in ready):
        if zone is None:
            return "unknown"
        if any(zone in (c.hint_zones or ()) for c in ready):
            return "zone"
    return ""


def _cluster_set(candidates: list[_Candidate], node: str, zone: str | None) -> tuple[EndpointSet, str]:
    ready = [c for c in candidates if c.ready]
    mode = _topology(ready, node, zone)
    if mode == "node":
        chosen = [c for c in ready if node in (c.hint_nodes or ())]
    elif mode == "zone":
        chosen = [c for c in ready if zone in (c.hint_zones or ())]
    elif mode == "unknown":
        # kube-proxy programs the endpoints hinted for its zone; not knowing the zone, accept any of them.
        return EndpointSet(frozenset(), frozenset((c.ip, c.port) for c in ready)), mode
    else:
        chosen = ready
    if not chosen:
        chosen = [c for c in candidates if c.serving and c.terminating]
    return EndpointSet.exactly((c.ip, c.port) for c in chosen), mode


def _local_set(candidates: list[_Candidate]) -> EndpointSet:
    local = [c for c in candidates if c.local and c.ready]
    if not local:
        local = [c for c in candidates if c.local and c.serving and c.terminating]
    return EndpointSet.exactly((c.ip, c.port) for c in local)


def node_zone(node: Node | None) -> str | None:
    return node.meta.labels.get(ZONE_LABEL) if node is not None else None


def expected_state(snapshot: ClusterSnapshot, node: str, *, zone: str | None = None) -> ExpectedState:
    """Every Service port kube-proxy on ``node`` programs, per IP family, with its endpoint sets.

    ``zone`` defaults to the Node object's topology label when the snapshot holds the Node.
    """
    node_object = snapshot.nodes.get(node)
    if zone is None:
        zone = node_zone(node_object)
    addresses = frozenset(canonical_ip(a.address) for a in node_object.addresses) if node_object else frozenset()
    ports: list[ExpectedPort] = []
    total = 0
    for service in snapshot.services.values():
        if not is_proxied(service):
            continue
        slices = snapshot.slices_of(service)
        internal_local = service.internal_traffic_policy == "Local"
        external_local = service.external_traffic_policy == "Local"
        node_ports = service.type in ("NodePort", "LoadBalancer")
        for ip in cluster_ips(service):
            family = family_of(ip)
            for service_port in service.ports:
                protocol = service_port.protocol.lower()
                if protocol not in PROTOCOLS:
                    continue
                spn = ServicePortName(service.meta.namespace, service.meta.name, service_port.name or "", protocol)
                candidates = list(_candidates(slices, service_port, family, node).values())
                node_port = service_port.node_port if node_ports and service_port.node_port else None
                expected = ExpectedPort(
                    spn=spn,
                    family=family,
                    cluster_ip=ip,
                    port=service_port.port,
                    node_port=node_port,
                    health_check_node_port=(
                        service.health_check_node_port
                        if service.type == "LoadBalancer" and external_local and node_port is not None
                        else None
                    ),
                    internal_local=internal_local,
                    external_local=external_local and node_port is not None,
                    cluster=EndpointSet(),
                    local=EndpointSet(),
                    pods={(c.ip, c.port): c.pod for c in candidates if c.pod},
                    nodes={(c.ip, c.port): c.node for c in candidates if c.node},
                )
                cluster, mode = (
                    _cluster_set(candidates, node, zone) if expected.uses_cluster_endpoints else (EndpointSet(), "")
                )
                local = _local_set(candidates) if expected.uses_local_endpoints else EndpointSet()
                total += len(cluster.allowed | local.allowed)
                ports.append(replace(expected, cluster=cluster, local=local, topology=mode))
    return ExpectedState(node, zone, addresses, tuple(ports), total)
