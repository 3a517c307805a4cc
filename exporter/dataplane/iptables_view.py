"""kube-proxy's iptables-mode rules for one IP family, seen through ``RuleView``. Pure.

Built from a parsed ``iptables-save`` dump (nat table required, filter table optional). The
dispatch chains (KUBE-SERVICES, KUBE-NODEPORTS, the filter chains) are indexed once; policy and
endpoint chains are read only when the comparison asks, and remembered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.dataplane.expected import IPV4, IPV6, EndpointKey, canonical_ip
from exporter.dataplane.iptables_save import (
    IptablesSave,
    Table,
    dnat_destination,
    parse_rule,
    rule_target,
    split_host_port,
)
from exporter.dataplane.lookups import DispatchLookups

_POLICY_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-")
# Chains only kube-proxy's IPVS mode creates (docs/kube-proxy.md §7): such rules must not be read as iptables mode.
IPVS_CHAINS = ("KUBE-NODE-PORT", "KUBE-LOAD-BALANCER", "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER")


def _port(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _verdict(target: str, comment: str | None) -> str:
    return f'{target} "{comment}"' if comment else target


@dataclass
class IptablesView(DispatchLookups):
    family: str
    nat: Table
    filter: Table | None
    _dispatch: dict[tuple[str, str, int], str] = field(default_factory=dict)
    _node_ports: dict[tuple[str, int], str] = field(default_factory=dict)
    _rejected: dict[tuple[str, str, int], str] = field(default_factory=dict)
    _node_ports_rejected: dict[tuple[str, int], str] = field(default_factory=dict)
    _health_check_ports: set[int] = field(default_factory=set)
    _endpoints: dict[str, frozenset[EndpointKey] | None] = field(default_factory=dict)

    @classmethod
    def build(cls, dump: IptablesSave, family: str | None = None) -> IptablesView | None:
        """The view of a dump, or None when it holds no nat table (nothing kube-proxy wrote to read)."""
        nat = dump.table("nat")
        if nat is None:
            return None
        view = cls(family or IPV4, nat, dump.table("filter"))
        view._index()
        if family is None:
            view.family = view._guess_family()
        return view

    def _index(self) -> None:
        for line in self.nat.rules("KUBE-SERVICES"):
            rule = parse_rule(line)
            target, address, protocol = rule.target, rule.address("-d"), rule.matches.get("-p")
            port = _port(rule.matches.get("--dport"))
            if not target or not target.startswith(_POLICY_PREFIXES) or "-d" in rule.negated:
                continue
            if address and protocol and port is not None:
                self._dispatch.setdefault((canonical_ip(address), protocol, port), target)
        for line in self.nat.rules("KUBE-NODEPORTS"):
            rule = parse_rule(line)
            port = _port(rule.matches.get("--dport"))
            protocol = rule.matches.get("-p")
            if rule.target and rule.target.startswith("KUBE-EXT-") and protocol and port is not None:
                self._node_ports.setdefault((protocol, port), rule.target)
        if self.filter is None:
            return
        for chain in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"):
            for line in self.filter.rules(chain):
                rule = parse_rule(line)
                if rule.target not in ("REJECT", "DROP"):
                    continue
                port = _port(rule.matches.get("--dport"))
                protocol = rule.matches.get("-p")
                if port is None or not protocol:
                    continue
                verdict = _verdict(rule.target, rule.comment)
                address = rule.address("-d")
                if address:
                    self._rejected.setdefault((canonical_ip(address), protocol, port), verdict)
                elif chain == "KUBE-EXTERNAL-SERVICES":
                    self._node_ports_rejected.setdefault((protocol, port), verdict)
        for line in self.filter.rules("KUBE-NODEPORTS"):
            rule = parse_rule(line)
            port = _port(rule.matches.get("--dport"))
            if rule.target == "ACCEPT" and port is not None:
                self._health_check_ports.add(port)

    def _guess_family(self) -> str:
        addresses = [ip for ip, _protocol, _port in self._dispatch]
        return IPV6 if addresses and sum(":" in ip for ip in addresses) * 2 > len(addresses) else IPV4

    # RuleView ---------------------------------------------------------------------------------
    def has_chain(self, name: str) -> bool:
        return self.nat.has_chain(name)

    def health_check_port_open(self, port: int) -> bool | None:
        return None if self.filter is None else port in self._health_check_ports

    def jumps(self, chain: str) -> frozenset[str]:
        return frozenset(t for t in map(rule_target, self.nat.rules(chain)) if t)

    def endpoints(self, chain: str) -> frozenset[EndpointKey] | None:
        if chain in self._endpoints:
            return self._endpoints[chain]
        found: frozenset[EndpointKey] | None = None
        if self.nat.has_chain(chain):
            keys = set()
            for target in self.jumps(chain):
                if target.startswith("KUBE-SEP-"):
                    for line in self.nat.rules(target):
                        destination = dnat_destination(line)
                        if destination is not None:
                            keys.add((canonical_ip(destination[0]), destination[1]))
            found = frozenset(keys)
        self._endpoints[chain] = found
        return found

    # Facts about the node and the mode ----------------------------------------------------------
    @property
    def has_kube_proxy_rules(self) -> bool:
        return self.nat.has_chain("KUBE-SERVICES")

    @property
    def dispatched(self) -> int:
        return len(self._dispatch)


def looks_like_ipvs(dump: IptablesSave) -> bool:
    return any(table.has_chain(name) for table in dump.tables.values() for name in IPVS_CHAINS)


def snat_sources(dump: IptablesSave) -> set[str]:
    """Addresses the AWS VPC CNI SNATs pod traffic to: this node's primary IP (docs/kube-proxy.md §10)."""
    nat = dump.table("nat")
    if nat is None:
        return set()
    found = set()
    for name in nat.chain_names():
        if not name.startswith("AWS-SNAT-CHAIN"):
            continue
        for line in nat.rules(name):
            rule = parse_rule(line)
            source = rule.target_options.get("--to-source") if rule.target == "SNAT" else None
            if not source:
                continue
            first = source.split("-", 1)[0]
            parsed = split_host_port(first)
            found.add(canonical_ip(parsed[0] if parsed else first))
    return found
