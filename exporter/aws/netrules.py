"""How AWS evaluates security groups, network ACLs and route tables, as pure functions.

- **Security groups** are stateful allow-lists: a flow is allowed when any rule of any group on the
  interface matches its protocol and port and its source (a referenced group, a CIDR that contains
  the source, or a prefix list, whose entries lbdoctor does not read).
- **Network ACLs** are stateless and ordered: for each packet, the lowest-numbered rule matching
  protocol, port and address decides; the final ``*`` rule denies. A flow here is a *range* of
  addresses and ports (an LB subnet, the ephemeral ports), so evaluation walks the rules keeping the
  part of the range no rule has decided yet; whatever is left at the end is denied.
- **Route tables** send a packet by the longest matching prefix; ``local`` covers the VPC CIDR.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from exporter.aws.model import NetworkAcl, Route, RouteTable, SecurityGroup, SgRule

EPHEMERAL_PORTS = (1024, 65535)  # the return-traffic range AWS's NACL guidance opens
ALL_PORTS = (0, 65535)
TCP, UDP = 6, 17
_PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "all": -1}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=1 << 16)
def network(text: str) -> Network | None:
    """A CIDR or a bare address as a network; None when it is neither."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def contains(outer: str, inner: str) -> bool:
    a, b = network(outer), network(inner)
    return a is not None and b is not None and a.version == b.version and b.subnet_of(a)  # type: ignore[arg-type]


def protocol_number(text: str) -> int | None:
    """``-1``/``all`` -> -1; ``tcp``/``6`` -> 6; None for anything unreadable."""
    lowered = text.strip().lower()
    if lowered in _PROTOCOL_NUMBERS:
        return _PROTOCOL_NUMBERS[lowered]
    try:
        return int(lowered)
    except ValueError:
        return None


def protocol_name(number: int) -> str:
    return {TCP: "TCP", UDP: "UDP", -1: "all traffic"}.get(number, f"protocol {number}")


# -- security groups -------------------------------------------------------------------------------


class Access(enum.Enum):
    ALLOWED = "allowed"
    PREFIX_LIST = "prefix_list"  # only a prefix-list rule could allow it; its entries are not read
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class SgVerdict:
    access: Access
    via: str = ""  # the rule that allows it, in words
    uncovered: tuple[str, ...] = ()  # source CIDRs no rule allows
    prefix_lists: tuple[str, ...] = ()


def _rule_matches(rule: SgRule, protocol: int, port: int) -> bool:
    number = protocol_number(rule.protocol)
    if number == -1:
        return True
    if number != protocol:
        return False
    if protocol not in (TCP, UDP) or rule.from_port is None or rule.to_port is None:
        return True
    if rule.from_port == -1:
        return True
    return rule.from_port <= port <= rule.to_port


def _describe_rule(group: SecurityGroup, rule: SgRule, source: str) -> str:
    number = protocol_number(rule.protocol)
    if number == -1:
        ports = "all traffic"
    elif rule.from_port is None or rule.from_port == rule.to_port:
        ports = f"{protocol_name(number or 0)} {rule.from_port if rule.from_port is not None else 'all ports'}"
    else:
        ports = f"{protocol_name(number or 0)} {rule.from_port}-{rule.to_port}"
    return f"{group.id} allows {source} on {ports}"


def ingress_allows(
    groups: Sequence[SecurityGroup],
    protocol: int,
    port: int,
    *,
    source_groups: Collection[str] = (),
    source_cidrs: Sequence[str] = (),
) -> SgVerdict:
    """Do these groups (one interface's) let in the source on protocol/port? A source is allowed by a
    rule naming one of its groups, or when every one of its CIDRs lies inside an allowed CIDR."""
    matching = [(group, rule) for group in groups for rule in group.ingress if _rule_matches(rule, protocol, port)]
    for group, rule in matching:
        shared = [g for g in rule.group_ids if g in source_groups]
        if shared:
            return SgVerdict(Access.ALLOWED, _describe_rule(group, rule, shared[0]))
    uncovered = []
    via = ""
    for cidr in source_cidrs:
        cover = next(
            ((group, rule, c) for group, rule in matching for c in rule.cidrs if contains(c, cidr)),
            None,
        )
        if cover is None:
            uncovered.append(cidr)
        elif not via:
            via = _describe_rule(cover[0], cover[1], cover[2])
    if source_cidrs and not uncovered:
        return SgVerdict(Access.ALLOWED, via)
    prefix_lists = tuple(sorted({p for _, rule in matching for p in rule.prefix_list_ids}))
    if prefix_lists:
        return SgVerdict(Access.PREFIX_LIST, uncovered=tuple(uncovered), prefix_lists=prefix_lists)
    return SgVerdict(Access.DENIED, uncovered=tuple(uncovered) or tuple(source_cidrs))


# -- network ACLs ------------------------------------------------------------------------------------

# A box of (first address, last address, first port, last port), inclusive, as integers.
_Box = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class NaclVerdict:
    allowed: bool
    rule: int | None = None  # the lowest-numbered rule that denies part of the flow; None: the final "*"
    denied: str = ""  # what it denies, e.g. "10.0.1.0-10.0.1.255 ports 1024-65535"


def _span(net: Network) -> tuple[int, int]:
    return int(net.network_address), int(net.broadcast_address)


def _minus(box: _Box, cut: _Box) -> list[_Box]:
    """``box`` without ``cut`` (which lies inside it), as up to four boxes."""
    a0, a1, p0, p1 = box
    c0, c1, q0, q1 = cut
    pieces = [(a0, c0 - 1, p0, p1), (c1 + 1, a1, p0, p1), (c0, c1, p0, q0 - 1), (c0, c1, q1 + 1, p1)]
    return [p for p in pieces if p[0] <= p[1] and p[2] <= p[3]]


def _intersect(box: _Box, other: _Box) -> _Box | None:
    a0, a1 = max(box[0], other[0]), min(box[1], other[1])
    p0, p1 = max(box[2], other[2]), min(box[3], other[3])
    return (a0, a1, p0, p1) if a0 <= a1 and p0 <= p1 else None


def _describe_box(box: _Box, version: int) -> str:
    kind = ipaddress.IPv6Address if version == 6 else ipaddress.IPv4Address
    first, last = kind(box[0]), kind(box[1])
    addresses = str(first) if box[0] == box[1] else f"{first}-{last}"
    ports = f"port {box[2]}" if box[2] == box[3] else f"ports {box[2]}-{box[3]}"
    return f"{addresses} {ports}"


def evaluate_nacl(acl: NetworkAcl, *, egress: bool, peer: str, protocol: int, ports: tuple[int, int]) -> NaclVerdict:
    """Is every packet of the flow allowed? ``peer`` is the source (inbound) or destination (outbound)
    address range, ``ports`` the destination ports."""
    peer_net = network(peer)
    if peer_net is None:
        return NaclVerdict(False, None, f"unreadable address {peer}")
    undecided: list[_Box] = [(*_span(peer_net), ports[0], ports[1])]
    first_denial: tuple[int, _Box] | None = None
    entries = sorted((e for e in acl.entries if e.egress == egress), key=lambda e: e.rule_number)
    for entry in entries:
        entry_net = network(entry.cidr)
        number = protocol_number(entry.protocol)
        if entry_net is None or entry_net.version != peer_net.version or number is None:
            continue
        if number != -1 and number != protocol:
            continue
        entry_ports = ALL_PORTS
        if number in (TCP, UDP) and entry.port_from is not None and entry.port_to is not None:
            entry_ports = (entry.port_from, entry.port_to)
        rule_box = (*_span(entry_net), entry_ports[0], entry_ports[1])
        remaining: list[_Box] = []
        for box in undecided:
            cut = _intersect(box, rule_box)
            if cut is None:
                remaining.append(box)
                continue
            if not entry.allow and first_denial is None:
                first_denial = (entry.rule_number, cut)
            remaining.extend(_minus(box, cut))
        undecided = remaining
        if not undecided:
            break
    if first_denial is not None:
        number, box = first_denial
        return NaclVerdict(False, None if number >= 32767 else number, _describe_box(box, peer_net.version))
    if undecided:
        return NaclVerdict(False, None, _describe_box(undecided[0], peer_net.version))
    return NaclVerdict(True)


def uniform_over(cidrs: Iterable[str], block: str) -> bool:
    """Does every CIDR either contain ``block`` whole or miss it entirely? Then every address in the block
    gets the same verdict, and evaluating the block once answers for each of them."""
    inside = network(block)
    if inside is None:
        return False
    for cidr in cidrs:
        net = network(cidr)
        if net is None or net.version != inside.version:
            continue
        if inside.subnet_of(net):  # type: ignore[arg-type]
            continue
        if net.overlaps(inside):
            return False
    return True


# -- route tables ------------------------------------------------------------------------------------


class RouteProblem(enum.Enum):
    MISSING_LOCAL = "missing_local"
    BLACKHOLE = "blackhole"
    NOT_LOCAL = "not_local"


@dataclass(frozen=True, slots=True)
class RouteVerdict:
    problem: RouteProblem | None
    route: Route | None = None


def _routes_of(table: RouteTable, version: int) -> Iterable[tuple[Network, Route]]:
    for route in table.routes:
        net = network(route.destination) if route.destination else None
        if net is not None and net.version == version:
            yield net, route


def route_to(table: RouteTable, destination: str) -> RouteVerdict:
    """How the table sends traffic for ``destination`` (an address or a CIDR) inside the VPC."""
    dest = network(destination)
    if dest is None:
        return RouteVerdict(RouteProblem.MISSING_LOCAL)
    routes = list(_routes_of(table, dest.version))
    if not any(route.target == "local" and dest.subnet_of(net) for net, route in routes):  # type: ignore[arg-type]
        return RouteVerdict(RouteProblem.MISSING_LOCAL)
    covering = [(net, route) for net, route in routes if dest.subnet_of(net)]  # type: ignore[arg-type]
    inside = [route for net, route in routes if net != dest and net.subnet_of(dest)]  # type: ignore[arg-type]
    best = max(covering, key=lambda pair: pair[0].prefixlen)[1]
    for route in (best, *inside):
        if route.state == "blackhole":
            return RouteVerdict(RouteProblem.BLACKHOLE, route)
    if best.target != "local":
        return RouteVerdict(RouteProblem.NOT_LOCAL, best)
    return RouteVerdict(None, best)
