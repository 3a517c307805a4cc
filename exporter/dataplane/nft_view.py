"""kube-proxy's nftables-mode objects for one IP family, seen through ``RuleView``. Pure.

Dispatch lives in verdict maps (``service-ips``, ``service-nodeports``, ``no-endpoint-*``), so it
is read from map elements; which endpoints a service chain uses comes from its ``numgen … vmap``
rule, and each endpoint chain's ``dnat to`` names the address.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.dataplane.expected import IPV4, IPV6, EndpointKey, canonical_ip
from exporter.dataplane.lookups import DispatchLookups
from exporter.dataplane.nft_json import NftRuleset, NftTable

FAMILIES = {"ip": IPV4, "ip6": IPV6}


def _from_chain_name(chain: str, family: str) -> EndpointKey | None:
    """``endpoint-HASH-ns/svc/tcp/port__10.0.0.1/80`` (IPv6 colons written as dots) → the address."""
    _, sep, tail = chain.rpartition("__")
    address, slash, port = tail.rpartition("/")
    if not sep or not slash or not port.isdigit():
        return None
    if family == IPV6:
        address = address.replace(".", ":")
    return canonical_ip(address), int(port)


def _verdict_text(found: tuple[str, str | None] | None, comment: str | None) -> str | None:
    if found is None:
        return None
    kind, target = found
    if kind == "reject" or target == "reject-chain":
        text = "reject"
    elif kind == "drop":
        text = "drop"
    else:
        text = f"{kind} {target}" if target else kind
    return f'{text} "{comment}"' if comment else text


@dataclass
class NftView(DispatchLookups):
    family: str
    table: NftTable
    _dispatch: dict[tuple[str, str, int], str] = field(default_factory=dict)
    _node_ports: dict[tuple[str, int], str] = field(default_factory=dict)
    _rejected: dict[tuple[str, str, int], str] = field(default_factory=dict)
    _node_ports_rejected: dict[tuple[str, int], str] = field(default_factory=dict)
    _endpoints: dict[str, frozenset[EndpointKey] | None] = field(default_factory=dict)

    @classmethod
    def build(cls, ruleset: NftRuleset, family: str) -> NftView | None:
        """The view of ``table <family> kube-proxy`` (family ``ip`` or ``ip6``), or None without one."""
        table = ruleset.table(family)
        if table is None:
            return None
        view = cls(FAMILIES.get(family, IPV4), table)
        view._index()
        return view

    def _index(self) -> None:
        maps = self.table.maps
        for key, found, _comment in maps.get("service-ips", ()):
            if len(key) == 3 and found is not None and found[1] and isinstance(key[0], str) and isinstance(key[2], int):
                self._dispatch.setdefault((canonical_ip(key[0]), str(key[1]), key[2]), found[1])
        for key, found, _comment in maps.get("service-nodeports", ()):
            if len(key) == 2 and found is not None and found[1] and isinstance(key[1], int):
                self._node_ports.setdefault((str(key[0]), key[1]), found[1])
        for key, found, comment in maps.get("no-endpoint-services", ()):
            text = _verdict_text(found, comment)
            if len(key) == 3 and text and isinstance(key[0], str) and isinstance(key[2], int):
                self._rejected.setdefault((canonical_ip(key[0]), str(key[1]), key[2]), text)
        for key, found, comment in maps.get("no-endpoint-nodeports", ()):
            text = _verdict_text(found, comment)
            if len(key) == 2 and text and isinstance(key[1], int):
                self._node_ports_rejected.setdefault((str(key[0]), key[1]), text)

    # RuleView ---------------------------------------------------------------------------------
    def has_chain(self, name: str) -> bool:
        return name in self.table.chains

    def health_check_port_open(self, port: int) -> bool | None:
        return None  # nftables mode needs no accept rule for it: nothing to compare

    def jumps(self, chain: str) -> frozenset[str]:
        return frozenset(self.table.jumps.get(chain, ()))

    def endpoints(self, chain: str) -> frozenset[EndpointKey] | None:
        if chain in self._endpoints:
            return self._endpoints[chain]
        found: frozenset[EndpointKey] | None = None
        if chain in self.table.chains:
            keys = set()
            for target in self.jumps(chain):
                if not target.startswith("endpoint-"):
                    continue
                address = self.table.dnat.get(target)
                if address is None and self.table.rules.get(target):
                    # Rules of a shape this parser does not know: trust the name, which holds the address.
                    address = _from_chain_name(target, self.family)
                if address is not None:
                    keys.add(address)
            found = frozenset(keys)
        self._endpoints[chain] = found
        return found

    @property
    def dispatched(self) -> int:
        return len(self._dispatch)
