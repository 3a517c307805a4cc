"""Expected state against this node's rules, per Service port: what is missing, what is stale. Pure.

The comparison speaks of chains and verdicts through a ``RuleView`` (one per IP family, built from
iptables-save or nft output), so iptables and nftables modes share one set of rules about what
kube-proxy must have written:

- ClusterIP traffic must be dispatched to the Service's policy chain whenever it has endpoints, and
  must not meet a "has no endpoints" REJECT then;
- each policy chain kube-proxy uses must send traffic to exactly the endpoints the API lists
  (missing: required but absent; stale: programmed but not allowed);
- a NodePort must lead to the Service's external chain, and from there to its endpoints;
- a healthCheckNodePort must be let in (iptables filter table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from exporter.dataplane import names
from exporter.dataplane.expected import EndpointKey, EndpointSet, ExpectedPort
from exporter.dataplane.names import ServicePortName, join_host_port


class Problem(StrEnum):
    SERVICE_RULES_MISSING = "service_rules_missing"
    REJECTING = "rejecting"
    ENDPOINT_MISSING = "endpoint_missing"
    ENDPOINT_STALE = "endpoint_stale"
    NODE_PORT_MISSING = "node_port_missing"
    NODE_PORT_REJECTING = "node_port_rejecting"
    HEALTH_CHECK_PORT_MISSING = "health_check_port_missing"

    @property
    def missing(self) -> bool:
        """Counted in lbdoctor_kube_proxy_rules_missing (else in …_rules_stale)."""
        return self not in (Problem.ENDPOINT_STALE, Problem.REJECTING, Problem.NODE_PORT_REJECTING)

    @property
    def rule(self) -> str:
        """The ``rule`` label of the rules_missing / rules_stale metrics."""
        return _RULE_LABELS[self]


_RULE_LABELS = {
    Problem.SERVICE_RULES_MISSING: "service",
    Problem.REJECTING: "reject",
    Problem.ENDPOINT_MISSING: "endpoint",
    Problem.ENDPOINT_STALE: "endpoint",
    Problem.NODE_PORT_MISSING: "node_port",
    Problem.NODE_PORT_REJECTING: "reject",
    Problem.HEALTH_CHECK_PORT_MISSING: "health_check_node_port",
}

FindingKey = tuple[Problem, ServicePortName, str, EndpointKey | None]


@dataclass(frozen=True, slots=True)
class Finding:
    problem: Problem
    spn: ServicePortName
    family: str
    detail: str  # what was found, naming the chain or map and the rule
    endpoint: EndpointKey | None = None
    pod: str | None = None
    port: int | None = None  # the Service port, NodePort or health check port the finding is about

    @property
    def key(self) -> FindingKey:
        return (self.problem, self.spn, self.family, self.endpoint)


class RuleView(Protocol):
    """What one IP family's kube-proxy rules say, in the terms the comparison needs."""

    @property
    def family(self) -> str: ...
    def has_chain(self, name: str) -> bool: ...
    def cluster_target(self, ip: str, protocol: str, port: int) -> str | None: ...
    def cluster_rejected(self, ip: str, protocol: str, port: int) -> str | None: ...
    def node_port_target(self, protocol: str, port: int) -> str | None: ...
    def node_port_rejected(self, protocol: str, port: int) -> str | None: ...
    def health_check_port_open(self, port: int) -> bool | None: ...
    def jumps(self, chain: str) -> frozenset[str]: ...
    def endpoints(self, chain: str) -> frozenset[EndpointKey] | None: ...


@dataclass(frozen=True)
class Naming:
    """How one mode names things, for lookups and for messages a person can grep the rules with."""

    cluster_chain: Callable[[ServicePortName], str]
    local_chain: Callable[[ServicePortName], str]
    external_chain: Callable[[ServicePortName], str]
    endpoint_chain: Callable[[ServicePortName, str, int], str]
    dispatch: str  # where ClusterIPs are dispatched
    node_ports: str  # where NodePorts are dispatched
    entry: str  # what one dispatch entry is called there


IPTABLES = Naming(
    names.svc_chain,
    names.svl_chain,
    names.ext_chain,
    names.sep_chain,
    "nat KUBE-SERVICES",
    "nat KUBE-NODEPORTS",
    "rule",
)
NFTABLES = Naming(
    names.nft_service_chain,
    names.nft_local_chain,
    names.nft_external_chain,
    names.nft_endpoint_chain,
    "map service-ips",
    "map service-nodeports",
    "element",
)


@dataclass(frozen=True)
class Comparison:
    findings: tuple[Finding, ...]
    ports: int  # Service ports compared
    endpoints: int  # endpoint rules looked for


def compare(ports: Iterable[ExpectedPort], view: RuleView, naming: Naming) -> Comparison:
    findings: dict[FindingKey, Finding] = {}
    compared = 0
    endpoints = 0
    for port in ports:
        if port.family != view.family:
            continue
        compared += 1
        endpoints += len(port.cluster.required | port.local.required)
        for finding in compare_port(port, view, naming):
            # One finding per key: the same endpoint missing from the SVC and the SVL chain is one problem.
            earlier = findings.get(finding.key)
            if earlier is None:
                findings[finding.key] = finding
            elif finding.detail not in earlier.detail:
                findings[finding.key] = replace(earlier, detail=f"{earlier.detail}; {finding.detail}")
    return Comparison(tuple(findings.values()), compared, endpoints)


def where(ip: str, port: int, protocol: str) -> str:
    return f"{join_host_port(ip, port)}/{protocol}"


def compare_port(port: ExpectedPort, view: RuleView, naming: Naming) -> list[Finding]:
    spn, protocol = port.spn, port.spn.protocol
    svc, svl, ext = naming.cluster_chain(spn), naming.local_chain(spn), naming.external_chain(spn)
    address = where(port.cluster_ip, port.port, protocol)
    findings: list[Finding] = []
    missing_service: list[str] = []

    internal_chain = svl if port.internal_local else svc
    target = view.cluster_target(port.cluster_ip, protocol, port.port)
    if port.internal.required:
        if target is None:
            missing_service.append(f"no {naming.dispatch} {naming.entry} sends {address} to {internal_chain}")
        elif target != internal_chain:
            missing_service.append(f"{naming.dispatch} sends {address} to {target}, not {internal_chain}")
        rejected = view.cluster_rejected(port.cluster_ip, protocol, port.port)
        if rejected:
            findings.append(
                Finding(
                    Problem.REJECTING,
                    spn,
                    port.family,
                    f"{rejected} for {address} while {len(port.internal.required)} endpoint(s) are ready",
                    port=port.port,
                )
            )

    external_jumps = view.jumps(ext) if port.externally_accessible else frozenset()
    reached = {target} | external_jumps
    for chain, wanted, used, kind in (
        (svc, port.cluster, port.uses_cluster_endpoints, "cluster"),
        (svl, port.local, port.uses_local_endpoints, "local"),
    ):
        if not ((used and wanted.required) or chain in reached):
            continue  # kube-proxy needs no such chain here, and no traffic reaches a leftover one
        findings += _compare_chain(port, view, naming, chain, wanted, kind, missing_service)

    if port.node_port is not None:
        findings += _compare_node_port(port, view, naming, ext, svc, svl)
    if port.health_check_node_port is not None and view.health_check_port_open(port.health_check_node_port) is False:
        findings.append(
            Finding(
                Problem.HEALTH_CHECK_PORT_MISSING,
                spn,
                port.family,
                f"filter KUBE-NODEPORTS has no ACCEPT rule for health check node port "
                f"{port.health_check_node_port}/tcp",
                port=port.health_check_node_port,
            )
        )
    if missing_service:
        findings.insert(
            0, Finding(Problem.SERVICE_RULES_MISSING, spn, port.family, "; ".join(missing_service), port=port.port)
        )
    return findings


def _compare_chain(
    port: ExpectedPort,
    view: RuleView,
    naming: Naming,
    chain: str,
    wanted: EndpointSet,
    kind: str,
    missing_service: list[str],
) -> list[Finding]:
    programmed = view.endpoints(chain)
    if programmed is None:
        if wanted.required:
            missing_service.append(f"chain {chain} ({kind} endpoints) does not exist")
        return []
    findings = []
    for ip, number in sorted(wanted.required - programmed):
        findings.append(
            Finding(
                Problem.ENDPOINT_MISSING,
                port.spn,
                port.family,
                f"{chain} does not send traffic to {join_host_port(ip, number)} "
                f"({naming.endpoint_chain(port.spn, ip, number)})",
                (ip, number),
                port.pods.get((ip, number)),
            )
        )
    everywhere = port.cluster.allowed | port.local.allowed
    for ip, number in sorted(programmed - wanted.allowed):
        why = (
            "which is not a local endpoint of this node"
            if (ip, number) in everywhere
            else "which no EndpointSlice lists as a usable endpoint"
        )
        findings.append(
            Finding(
                Problem.ENDPOINT_STALE,
                port.spn,
                port.family,
                f"{chain} still sends traffic to {join_host_port(ip, number)}, {why}",
                (ip, number),
                port.pods.get((ip, number)),
            )
        )
    return findings


def _compare_node_port(
    port: ExpectedPort, view: RuleView, naming: Naming, ext: str, svc: str, svl: str
) -> list[Finding]:
    assert port.node_port is not None
    spn, protocol = port.spn, port.spn.protocol
    problems: list[str] = []
    findings: list[Finding] = []
    node_port = f"NodePort {port.node_port}/{protocol}"
    if port.any_required:
        target = view.node_port_target(protocol, port.node_port)
        if target is None:
            problems.append(f"no {naming.node_ports} {naming.entry} sends {node_port} to {ext}")
        elif target != ext:
            problems.append(f"{naming.node_ports} sends {node_port} to {target}, not {ext}")
        elif port.external.required:
            following = svl if port.external_local else svc
            if following not in view.jumps(ext):
                problems.append(f"{ext} does not send {node_port} on to {following}")
    if port.external.required:
        rejected = view.node_port_rejected(protocol, port.node_port)
        if rejected:
            findings.append(
                Finding(
                    Problem.NODE_PORT_REJECTING,
                    spn,
                    port.family,
                    f"{rejected} for {node_port} while {len(port.external.required)} endpoint(s) can serve it",
                    port=port.node_port,
                )
            )
    if problems:
        findings.insert(
            0, Finding(Problem.NODE_PORT_MISSING, spn, port.family, "; ".join(problems), port=port.node_port)
        )
    return findings
