"""Rule sets as kube-proxy writes them for one node, from a small description of Services and endpoints.

Written from the documented formats (docs/kube-proxy.md §2-§4, §6), not from upstream
dumps. It is deliberately simpler than kube-proxy and than lbdoctor's expected-state code: programmed
endpoints are "ready ones" (this node's only, for Local policies), and each fault is stated explicitly
on the Service, so a test reads as "kube-proxy programmed X while the API says Y".

Three renderings of the same rules:
- ``iptables_restore``: what kube-proxy feeds ``iptables-restore`` (its own option order);
- ``iptables_save``: what ``iptables-save`` prints back (hoisted -s/-d/-p, /32, quoting, rounded
  probabilities, sorted chains). A root test proves it equal to the real ``iptables-save`` output;
- ``nft_script``: what kube-proxy's nftables mode loads with ``nft -f``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from exporter.model.objects import (
    Endpoint,
    EndpointPort,
    EndpointSlice,
    Node,
    NodeAddress,
    ObjectMeta,
    Service,
    ServicePort,
)
from exporter.model.snapshot import ClusterSnapshot

NODE = "ip-10-0-1-23.ec2.internal"
NODE_IP = "10.0.1.23"
OTHER_NODE = "ip-10-0-2-45.ec2.internal"
OTHER_NODE_IP = "10.0.2.45"
POD_CIDR = "10.244.0.0/16"
MASQ = "0x4000"


@dataclass(frozen=True)
class Ep:
    ip: str
    node: str = NODE
    pod: str | None = None
    ready: bool = True
    serving: bool = True
    terminating: bool = False


@dataclass(frozen=True)
class Svc:
    name: str
    cluster_ip: str
    endpoints: tuple[Ep, ...] = ()
    namespace: str = "shop"
    port: int = 80
    port_name: str = "http"
    protocol: str = "TCP"
    target_port: int = 8080
    node_port: int | None = None
    load_balancer: bool = False
    external_local: bool = False
    health_check_node_port: int | None = None
    # Faults: how this node's rules differ from what kube-proxy should have written.
    programmed: tuple[str, ...] | None = None  # endpoint IPs in the rules (None: the right ones)
    reject: bool = False  # "has no endpoints" REJECT instead of the service's rules
    no_dispatch: bool = False  # no KUBE-SERVICES rule / service-ips element for the ClusterIP
    no_node_port: bool = False
    no_health_check_port: bool = False

    @property
    def spn(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def proto(self) -> str:
        return self.protocol.lower()

    @property
    def ipv6(self) -> bool:
        return ":" in self.cluster_ip

    def programmed_ips(self, node: str, *, local: bool) -> list[str]:
        if self.programmed is not None and not local:
            return list(self.programmed)
        chosen = [e.ip for e in self.endpoints if e.ready and (not local or e.node == node)]
        if self.programmed is not None:  # the fault applies to the local chain too
            chosen = [ip for ip in self.programmed if any(e.ip == ip and e.node == node for e in self.endpoints)]
        return chosen


def b32(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()


def host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# API objects ------------------------------------------------------------------------------------


def api_objects(services: Sequence[Svc]) -> tuple[list[Service], list[EndpointSlice]]:
    out_services, slices = [], []
    for svc in services:
        kind = "LoadBalancer" if svc.load_balancer else ("NodePort" if svc.node_port else "ClusterIP")
        out_services.append(
            Service(
                meta=ObjectMeta(svc.namespace, svc.name),
                type=kind,
                selector={"app": svc.name},
                ports=(ServicePort(svc.port_name or None, svc.port, svc.target_port, svc.protocol, svc.node_port),),
                cluster_ip=svc.cluster_ip,
                external_traffic_policy="Local" if svc.external_local else "Cluster",
                health_check_node_port=svc.health_check_node_port,
            )
        )
        slices.append(
            EndpointSlice(
                meta=ObjectMeta(svc.namespace, f"{svc.name}-abcde", labels={"kubernetes.io/service-name": svc.name}),
                service_name=svc.name,
                address_type="IPv6" if svc.ipv6 else "IPv4",
                endpoints=tuple(
                    Endpoint(
                        addresses=(e.ip,),
                        ready=e.ready,
                        serving=e.serving,
                        terminating=e.terminating,
                        node_name=e.node,
                        pod_name=e.pod,
                    )
                    for e in svc.endpoints
                ),
                ports=(EndpointPort(svc.port_name or None, svc.target_port, svc.protocol),),
            )
        )
    return out_services, slices


def nodes() -> list[Node]:
    return [
        Node(ObjectMeta("", NODE), (NodeAddress("InternalIP", NODE_IP),)),
        Node(ObjectMeta("", OTHER_NODE), (NodeAddress("InternalIP", OTHER_NODE_IP),)),
    ]


def snapshot(services: Sequence[Svc]) -> ClusterSnapshot:
    out_services, slices = api_objects(services)
    return ClusterSnapshot.of(services=out_services, endpoint_slices=slices, nodes=nodes())


def many(count: int, endpoints: int, *, node_ports: bool = False) -> list[Svc]:
    """``count`` ClusterIP Services with ``endpoints`` ready endpoints each, spread over two nodes."""
    out = []
    for index in range(count):
        eps = tuple(
            Ep(
                f"10.{64 + (index * endpoints + j) // 65536 % 64}.{(index * endpoints + j) // 256 % 256}."
                f"{(index * endpoints + j) % 256}",
                node=NODE if j % 2 == 0 else OTHER_NODE,
                pod=f"app{index}-{j}",
            )
            for j in range(endpoints)
        )
        out.append(
            Svc(
                f"app{index}",
                f"172.20.{index // 256 % 256}.{index % 256}",
                eps,
                namespace=f"ns{index % 50}",
                node_port=30000 + index % 2700 if node_ports else None,
            )
        )
    return out


# iptables ---------------------------------------------------------------------------------------


@dataclass
class Rule:
    """One rule, kept structured so it can be printed as kube-proxy writes it and as iptables-save does."""

    chain: str
    comment: str | None = None
    proto: str | None = None
    source: str | None = None
    source_negated: bool = False
    destination: str | None = None
    destination_negated: bool = False
    # Match modules after the comment, in order: (module, options as written, options as saved).
    matches: list[tuple[str, str, str]] = field(default_factory=list)
    target: str = ""
    target_args: str = ""
    target_args_saved: str | None = None

    def _ordered(self) -> list[tuple[str, str, str]]:
        # The protocol's own match module is loaded by "-m tcp -p tcp"; where it sits among the other
        # modules decides where iptables-save prints its options.
        if self.proto and not any(m[0] == self.proto for m in self.matches):
            return [(self.proto, "", ""), *self.matches]
        return self.matches

    def restore(self) -> str:
        parts = [f"-A {self.chain}"]
        if self.comment is not None:
            parts.append(f"-m comment --comment {_quote_always(self.comment)}")
        addresses = []
        if self.source:
            addresses.append(("! " if self.source_negated else "") + f"-s {self.source}")
        if self.destination:
            addresses.append(("! " if self.destination_negated else "") + f"-d {self.destination}")
        if not self.proto:
            parts += addresses
        for module, written, _saved in self._ordered():
            if module == self.proto:
                parts += [f"-m {module} -p {module}", *addresses, written]
            else:
                parts.append(f"-m {module} {written}")
        parts.append(f"-j {self.target}" + (f" {self.target_args}" if self.target_args else ""))
        return " ".join(p for p in parts if p)

    def save(self, ipv6: bool) -> str:
        parts = [f"-A {self.chain}"]
        if self.source:
            parts.append(("! " if self.source_negated else "") + f"-s {_host(self.source, ipv6)}")
        if self.destination:
            parts.append(("! " if self.destination_negated else "") + f"-d {_host(self.destination, ipv6)}")
        if self.proto:
            parts.append(f"-p {self.proto}")
        if self.comment is not None:
            parts.append(f"-m comment --comment {_quote_like_iptables(self.comment)}")
        for module, _written, saved in self._ordered():
            parts.append(f"-m {module} {saved}".rstrip())
        args = self.target_args if self.target_args_saved is None else self.target_args_saved
        parts.append(f"-j {self.target}" + (f" {args}" if args else ""))
        return " ".join(parts)


def _host(address: str, ipv6: bool) -> str:
    if "/" in address:
        return address
    return f"{address}/128" if ipv6 else f"{address}/32"


def _quote_always(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_like_iptables(text: str) -> str:
    # iptables-save leaves a value bare when it is only letters, digits, '-', '_' and '.'.
    if text and re.fullmatch(r"[A-Za-z0-9_.-]+", text):
        return text
    return _quote_always(text)


def _probability_written(n: int) -> str:
    return f"{1.0 / n:0.10f}"


def _probability_saved(n: int) -> str:
    # xt_statistic keeps the probability as a 31-bit fraction; iptables-save prints 11 decimals of it.
    stored = round(float(_probability_written(n)) * 0x80000000)
    return f"{stored / 0x80000000:.11f}"


@dataclass
class Tables:
    nat_chains: list[str] = field(default_factory=list)
    filter_chains: list[str] = field(default_factory=list)
    nat: list[Rule] = field(default_factory=list)
    filter: list[Rule] = field(default_factory=list)
    declared: set[str] = field(default_factory=set)

    def nat_chain(self, name: str) -> bool:
        """Declare a nat chain; False if it already was."""
        if name in self.declared:
            return False
        self.declared.add(name)
        self.nat_chains.append(name)
        return True


NAT_BUILTIN = ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")
FILTER_BUILTIN = ("INPUT", "FORWARD", "OUTPUT")


def _fixed(tables: Tables, ipv6: bool, aws: bool, node_ip: str) -> None:
    tables.nat_chains += ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-PROXY-CANARY"]
    tables.nat += [
        Rule("PREROUTING", "kubernetes service portals", target="KUBE-SERVICES"),
        Rule("OUTPUT", "kubernetes service portals", target="KUBE-SERVICES"),
        Rule("POSTROUTING", "kubernetes postrouting rules", target="KUBE-POSTROUTING"),
        Rule(
            "KUBE-POSTROUTING",
            matches=[("mark", f"! --mark {MASQ}/{MASQ}", f"! --mark {MASQ}/{MASQ}")],
            target="RETURN",
        ),
        Rule(
            "KUBE-POSTROUTING",
            target="MARK",
            target_args=f"--xor-mark {MASQ}",
            target_args_saved=f"--set-xmark {MASQ}/0x0",
        ),
        Rule(
            "KUBE-POSTROUTING",
            "kubernetes service traffic requiring SNAT",
            target="MASQUERADE",
            target_args="--random-fully",
        ),
        Rule(
            "KUBE-MARK-MASQ",
            target="MARK",
            target_args=f"--or-mark {MASQ}",
            target_args_saved=f"--set-xmark {MASQ}/{MASQ}",
        ),
    ]
    tables.filter_chains += [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-FORWARD",
        "KUBE-PROXY-FIREWALL",
        "KUBE-PROXY-CANARY",
        "KUBE-FIREWALL",
    ]
    new = ("conntrack", "--ctstate NEW", "--ctstate NEW")
    tables.filter += [
        Rule("INPUT", "kubernetes load balancer firewall", matches=[new], target="KUBE-PROXY-FIREWALL"),
        Rule("INPUT", "kubernetes health check service ports", target="KUBE-NODEPORTS"),
        Rule("INPUT", "kubernetes externally-visible service portals", matches=[new], target="KUBE-EXTERNAL-SERVICES"),
        Rule("INPUT", target="KUBE-FIREWALL"),
        Rule("FORWARD", "kubernetes forwarding rules", target="KUBE-FORWARD"),
        Rule("FORWARD", "kubernetes service portals", matches=[new], target="KUBE-SERVICES"),
        Rule(
            "FORWARD", "kubernetes externally-visible service portals", matches=[new], target="KUBE-EXTERNAL-SERVICES"
        ),
        Rule("OUTPUT", "kubernetes service portals", matches=[new], target="KUBE-SERVICES"),
        Rule("OUTPUT", target="KUBE-FIREWALL"),
        Rule("KUBE-FORWARD", matches=[("conntrack", "--ctstate INVALID", "--ctstate INVALID")], target="DROP"),
        Rule(
            "KUBE-FORWARD",
            "kubernetes forwarding rules",
            matches=[("mark", f"--mark {MASQ}/{MASQ}", f"--mark {MASQ}/{MASQ}")],
            target="ACCEPT",
        ),
        Rule(
            "KUBE-FORWARD",
            "kubernetes forwarding conntrack rule",
            matches=[("conntrack", "--ctstate RELATED,ESTABLISHED", "--ctstate RELATED,ESTABLISHED")],
            target="ACCEPT",
        ),
    ]
    if not ipv6:
        tables.filter.append(
            Rule(
                "KUBE-FIREWALL",
                "block incoming localnet connections",
                source="127.0.0.0/8",
                source_negated=True,
                destination="127.0.0.0/8",
                matches=[("conntrack", "! --ctstate RELATED,ESTABLISHED,DNAT", "! --ctstate RELATED,ESTABLISHED,DNAT")],
                target="DROP",
            )
        )
    if aws and not ipv6:
        # The VPC CNI's own chains (docs/kube-proxy.md §10): the comparison must leave them alone.
        tables.nat_chains += ["AWS-SNAT-CHAIN-0", "AWS-CONNMARK-CHAIN-0"]
        tables.nat += [
            Rule("PREROUTING", "AWS, outbound connections", target="AWS-CONNMARK-CHAIN-0"),
            Rule("POSTROUTING", "AWS SNAT CHAIN", target="AWS-SNAT-CHAIN-0"),
            Rule("AWS-SNAT-CHAIN-0", "AWS SNAT CHAIN", destination="10.0.0.0/16", target="RETURN"),
            Rule(
                "AWS-SNAT-CHAIN-0",
                "AWS, SNAT",
                matches=[("addrtype", "! --dst-type LOCAL", "! --dst-type LOCAL")],
                target="SNAT",
                target_args=f"--to-source {node_ip} --random-fully",
            ),
            Rule("AWS-CONNMARK-CHAIN-0", "AWS, CONNMARK", target="CONNMARK", target_args="--set-xmark 0x80/0x80"),
        ]


def _service_rules(tables: Tables, svc: Svc, node: str, large: bool) -> None:
    spn, proto = svc.spn, svc.proto
    h = b32(spn + proto)[:16]
    svc_chain, svl_chain, ext_chain = f"KUBE-SVC-{h}", f"KUBE-SVL-{h}", f"KUBE-EXT-{h}"
    cluster = [] if svc.reject else svc.programmed_ips(node, local=False)
    local = [] if svc.reject else svc.programmed_ips(node, local=True)
    externally = svc.node_port is not None
    uses_local = svc.external_local and externally and bool(local)
    dport = ("tcp" if proto == "tcp" else proto, f"--dport {svc.port}", f"--dport {svc.port}")
    reject_target = (
        "REJECT",
        "",
        "--reject-with " + ("icmp6-port-unreachable" if svc.ipv6 else "icmp-port-unreachable"),
    )
    if not cluster and not local:
        tables.filter.append(
            Rule(
                "KUBE-SERVICES",
                f"{spn} has no endpoints",
                proto,
                destination=svc.cluster_ip,
                matches=[dport],
                target=reject_target[0],
                target_args_saved=reject_target[2],
            )
        )
        if externally and not svc.no_node_port:
            tables.filter.append(
                Rule(
                    "KUBE-EXTERNAL-SERVICES",
                    f"{spn} has no endpoints",
                    proto,
                    matches=[
                        ("addrtype", "--dst-type LOCAL", "--dst-type LOCAL"),
                        (proto, f"--dport {svc.node_port}", f"--dport {svc.node_port}"),
                    ],
                    target=reject_target[0],
                    target_args_saved=reject_target[2],
                )
            )
    else:
        if not svc.no_dispatch:
            tables.nat.append(
                Rule(
                    "KUBE-SERVICES",
                    f"{spn} cluster IP",
                    proto,
                    destination=svc.cluster_ip,
                    matches=[dport],
                    target=svc_chain,
                )
            )
        _policy_chain(tables, svc, svc_chain, cluster, large, masquerade=True)
        if uses_local:
            _policy_chain(tables, svc, svl_chain, local, large, masquerade=False)
        if externally and not svc.no_node_port:
            tables.nat_chain(ext_chain)
            tables.nat.append(
                Rule(
                    "KUBE-NODEPORTS",
                    spn,
                    proto,
                    matches=[(proto, f"--dport {svc.node_port}", f"--dport {svc.node_port}")],
                    target=ext_chain,
                )
            )
            if svc.external_local:
                tables.nat += [
                    Rule(ext_chain, f"pod traffic for {spn} external destinations", source=POD_CIDR, target=svc_chain),
                    Rule(
                        ext_chain,
                        f"masquerade LOCAL traffic for {spn} external destinations",
                        matches=[("addrtype", "--src-type LOCAL", "--src-type LOCAL")],
                        target="KUBE-MARK-MASQ",
                    ),
                    Rule(
                        ext_chain,
                        f"route LOCAL traffic for {spn} external destinations",
                        matches=[("addrtype", "--src-type LOCAL", "--src-type LOCAL")],
                        target=svc_chain,
                    ),
                ]
                if uses_local:
                    tables.nat.append(Rule(ext_chain, target=svl_chain))
                else:
                    tables.filter.append(
                        Rule(
                            "KUBE-EXTERNAL-SERVICES",
                            f"{spn} has no local endpoints",
                            proto,
                            matches=[
                                ("addrtype", "--dst-type LOCAL", "--dst-type LOCAL"),
                                (proto, f"--dport {svc.node_port}", f"--dport {svc.node_port}"),
                            ],
                            target="DROP",
                        )
                    )
            else:
                tables.nat += [
                    Rule(ext_chain, f"masquerade traffic for {spn} external destinations", target="KUBE-MARK-MASQ"),
                    Rule(ext_chain, target=svc_chain),
                ]
    if svc.health_check_node_port and not svc.no_health_check_port:
        port = svc.health_check_node_port
        tables.filter.append(
            Rule(
                "KUBE-NODEPORTS",
                f"{spn} health check node port",
                "tcp",
                matches=[("tcp", f"--dport {port}", f"--dport {port}")],
                target="ACCEPT",
            )
        )


def _policy_chain(tables: Tables, svc: Svc, chain: str, ips: list[str], large: bool, *, masquerade: bool) -> None:
    spn, proto = svc.spn, svc.proto
    tables.nat_chain(chain)
    if masquerade and not svc.ipv6:
        tables.nat.append(
            Rule(
                chain,
                f"{spn} cluster IP",
                proto,
                source=POD_CIDR,
                source_negated=True,
                destination=svc.cluster_ip,
                matches=[(proto, f"--dport {svc.port}", f"--dport {svc.port}")],
                target="KUBE-MARK-MASQ",
            )
        )
    endpoints = sorted(host_port(ip, svc.target_port) for ip in ips)
    for index, endpoint in enumerate(endpoints):
        sep = "KUBE-SEP-" + b32(spn + proto + endpoint)[:16]
        left = len(endpoints) - index
        matches = []
        if left > 1:
            matches.append(
                (
                    "statistic",
                    f"--mode random --probability {_probability_written(left)}",
                    f"--mode random --probability {_probability_saved(left)}",
                )
            )
        tables.nat.append(Rule(chain, None if large else f"{spn} -> {endpoint}", matches=matches, target=sep))
        if not tables.nat_chain(sep):
            continue  # the SEP chain is shared by the SVC and SVL chains
        ip = endpoint.rsplit(":", 1)[0].strip("[]")
        tables.nat += [
            Rule(sep, None if large else spn, source=ip, target="KUBE-MARK-MASQ"),
            Rule(sep, None if large else spn, proto, target="DNAT", target_args=f"--to-destination {endpoint}"),
        ]


def build_tables(services: Sequence[Svc], node: str = NODE, *, large: bool | None = None, aws: bool = True) -> Tables:
    ipv6 = bool(services) and all(s.ipv6 for s in services)
    if large is None:
        large = sum(len(s.endpoints) for s in services) > 1000
    tables = Tables()
    _fixed(tables, ipv6, aws, OTHER_NODE_IP if node == OTHER_NODE else NODE_IP)
    for svc in services:
        _service_rules(tables, svc, node, large)
    tables.nat.append(
        Rule(
            "KUBE-SERVICES",
            "kubernetes service nodeports; NOTE: this must be the last rule in this chain",
            destination="::1/128" if ipv6 else "127.0.0.0/8",
            destination_negated=True,
            matches=[("addrtype", "--dst-type LOCAL", "--dst-type LOCAL")],
            target="KUBE-NODEPORTS",
        )
    )
    return tables


def iptables_restore(services: Sequence[Svc], node: str = NODE, **options: bool | None) -> str:
    tables = build_tables(services, node, **options)  # type: ignore[arg-type]
    out = ["*nat"]
    out += [f":{name} ACCEPT [0:0]" for name in NAT_BUILTIN]
    out += [f":{name} - [0:0]" for name in tables.nat_chains]
    out += [rule.restore() for rule in tables.nat]
    out += ["COMMIT", "*filter"]
    out += [f":{name} ACCEPT [0:0]" for name in FILTER_BUILTIN]
    out += [f":{name} - [0:0]" for name in tables.filter_chains]
    out += [rule.restore() for rule in tables.filter]
    out.append("COMMIT")
    return "\n".join(out) + "\n"


def _saved_table(
    name: str, builtin: Sequence[str], chains: Iterable[str], rules: Sequence[Rule], ipv6: bool
) -> list[str]:
    by_chain: dict[str, list[Rule]] = {}
    for rule in rules:
        by_chain.setdefault(rule.chain, []).append(rule)
    user = sorted(set(chains))
    out = ["# Generated by iptables-save v1.8.9 on Fri Nov 27 01:53:37 2026", f"*{name}"]
    out += [f":{chain} ACCEPT [0:0]" for chain in builtin]
    out += [f":{chain} - [0:0]" for chain in user]
    for chain in (*builtin, *user):
        out += [rule.save(ipv6) for rule in by_chain.get(chain, ())]
    out += ["COMMIT", "# Completed on Fri Nov 27 01:53:37 2026"]
    return out


def iptables_save(
    services: Sequence[Svc],
    node: str = NODE,
    *,
    tables_wanted: Sequence[str] = ("nat", "filter"),
    **options: bool | None,
) -> str:
    tables = build_tables(services, node, **options)  # type: ignore[arg-type]
    ipv6 = bool(services) and all(s.ipv6 for s in services)
    out: list[str] = []
    for wanted in tables_wanted:
        if wanted == "nat":
            out += _saved_table("nat", NAT_BUILTIN, tables.nat_chains, tables.nat, ipv6)
        elif wanted == "filter":
            out += _saved_table("filter", FILTER_BUILTIN, tables.filter_chains, tables.filter, ipv6)
    return "\n".join(out) + "\n"


def kubelet_hint() -> str:
    """The chains kubelet creates (iptables-wrappers look for them to pick the backend)."""
    return "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n"


# nftables ---------------------------------------------------------------------------------------


def nft_name(base: str) -> str:
    name = f"{b32(base)[:8]}-{base}"
    return name if len(name) <= 240 else name[:237] + "..."


def nft_script(services: Sequence[Svc], node: str = NODE, *, family: str = "ip") -> str:
    """``nft -f`` input for kube-proxy's nftables mode (docs/kube-proxy.md §6), one address family."""
    t = f"{family} kube-proxy"
    addr = "ipv6_addr" if family == "ip6" else "ipv4_addr"
    daddr = "ip6 daddr" if family == "ip6" else "ip daddr"
    saddr = "ip6 saddr" if family == "ip6" else "ip saddr"
    lines = [
        f'add table {t} {{ comment "rules for kube-proxy" ; }}',
        f"add chain {t} nat-prerouting {{ type nat hook prerouting priority dstnat ; }}",
        f"add chain {t} nat-output {{ type nat hook output priority -100 ; }}",
        f"add chain {t} nat-postrouting {{ type nat hook postrouting priority srcnat ; }}",
        f"add chain {t} filter-input {{ type filter hook input priority -110 ; }}",
        f"add chain {t} services",
        f"add chain {t} service-endpoints-check",
        f"add chain {t} nodeport-endpoints-check",
        f"add chain {t} mark-for-masquerade",
        f"add chain {t} masquerading",
        f"add chain {t} reject-chain",
        f'add set {t} cluster-ips {{ type {addr} ; comment "Active ClusterIPs" ; }}',
        f'add map {t} service-ips {{ type {addr} . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }}',
        f'add map {t} service-nodeports {{ type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }}',
        f'add map {t} no-endpoint-services {{ type {addr} . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }}',
        f'add map {t} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }}',
        f"add rule {t} nat-prerouting jump services",
        f"add rule {t} nat-output jump services",
        f"add rule {t} nat-postrouting jump masquerading",
        f"add rule {t} filter-input ct state new jump service-endpoints-check",
        f"add rule {t} filter-input ct state new jump nodeport-endpoints-check",
        f"add rule {t} mark-for-masquerade mark set mark or {MASQ}",
        f"add rule {t} masquerading mark and {MASQ} == 0 return",
        f"add rule {t} masquerading mark set mark xor {MASQ}",
        f"add rule {t} masquerading masquerade fully-random",
        f"add rule {t} reject-chain reject",
        f"add rule {t} services {daddr} . meta l4proto . th dport vmap @service-ips",
        f"add rule {t} services fib daddr type local meta l4proto . th dport vmap @service-nodeports",
        f"add rule {t} service-endpoints-check {daddr} . meta l4proto . th dport vmap @no-endpoint-services",
        f"add rule {t} nodeport-endpoints-check fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports",
    ]
    declared: set[str] = set()
    for svc in services:
        if svc.ipv6 != (family == "ip6"):
            continue
        base = f"{svc.namespace}/{svc.name}/{svc.proto}/{svc.port_name}"
        service_chain, local_chain, external_chain = (
            f"service-{nft_name(base)}",
            f"local-{nft_name(base)}",
            f"external-{nft_name(base)}",
        )
        cluster = [] if svc.reject else svc.programmed_ips(node, local=False)
        local = [] if svc.reject else svc.programmed_ips(node, local=True)
        externally = svc.node_port is not None
        lines.append(f"add element {t} cluster-ips {{ {svc.cluster_ip} }}")
        key = f"{svc.cluster_ip} . {svc.proto} . {svc.port}"
        if not cluster and not local:
            lines.append(
                f'add element {t} no-endpoint-services {{ {key} comment "{svc.namespace}/{svc.name}:{svc.port_name}" : goto reject-chain }}'
            )
            if externally and not svc.no_node_port:
                lines.append(
                    f"add element {t} no-endpoint-nodeports {{ {svc.proto} . {svc.node_port} : goto reject-chain }}"
                )
            continue
        if not svc.no_dispatch:
            lines.append(f"add element {t} service-ips {{ {key} : goto {service_chain} }}")
        for chain, ips, masquerade in ((service_chain, cluster, True), (local_chain, local, False)):
            if chain == local_chain and not (svc.external_local and externally and local):
                continue
            lines.append(f"add chain {t} {chain}")
            if masquerade and family == "ip":
                lines.append(
                    f"add rule {t} {chain} {daddr} {svc.cluster_ip} {svc.proto} dport {svc.port} {saddr} != {POD_CIDR} jump mark-for-masquerade"
                )
            endpoint_chains = []
            for ip in sorted(ips, key=lambda ip: host_port(ip, svc.target_port)):
                dotted = ip.replace(":", ".")
                ep_chain = "endpoint-" + nft_name(f"{base}__{dotted}/{svc.target_port}")
                endpoint_chains.append(ep_chain)
                if ep_chain in declared:
                    continue
                declared.add(ep_chain)
                lines += [
                    f"add chain {t} {ep_chain}",
                    f"add rule {t} {ep_chain} {saddr} {ip} jump mark-for-masquerade",
                    f"add rule {t} {ep_chain} meta l4proto {svc.proto} dnat to {host_port(ip, svc.target_port)}",
                ]
            if endpoint_chains:
                vmap = " , ".join(f"{i} : goto {c}" for i, c in enumerate(endpoint_chains))
                lines.append(f"add rule {t} {chain} numgen random mod {len(endpoint_chains)} vmap {{ {vmap} }}")
        if externally and not svc.no_node_port:
            lines.append(f"add chain {t} {external_chain}")
            lines.append(
                f"add element {t} service-nodeports {{ {svc.proto} . {svc.node_port} : goto {external_chain} }}"
            )
            if svc.external_local:
                lines += [
                    f'add rule {t} {external_chain} {saddr} {POD_CIDR} goto {service_chain} comment "short-circuit pod traffic"',
                    f'add rule {t} {external_chain} fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"',
                    f'add rule {t} {external_chain} fib saddr type local goto {service_chain} comment "short-circuit local traffic"',
                ]
                if local:
                    lines.append(f"add rule {t} {external_chain} goto {local_chain}")
            else:
                lines += [
                    f"add rule {t} {external_chain} jump mark-for-masquerade",
                    f"add rule {t} {external_chain} goto {service_chain}",
                ]
    # Chains first: map elements and rules may only name chains that exist (kube-proxy orders its
    # transaction the same way).
    chains = [line for line in lines[1:] if line.startswith(f"add chain {t} ")]
    rest = [line for line in lines[1:] if not line.startswith(f"add chain {t} ")]
    return "\n".join([lines[0], *chains, *rest]) + "\n"


def with_fault(services: Sequence[Svc], name: str, **fault: object) -> list[Svc]:
    """The same Services with one of them changed (a fault on this node, or a change in the API)."""
    return [replace(s, **fault) if s.name == name else s for s in services]  # type: ignore[arg-type]
