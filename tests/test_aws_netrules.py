"""Security groups, NACLs and routes evaluated as AWS does (pure), NACLs checked packet by packet."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.aws.model import NaclEntry, NetworkAcl, Route, RouteTable, SecurityGroup, SgRule
from exporter.aws.netrules import TCP, UDP, Access, RouteProblem, evaluate_nacl, ingress_allows, route_to

# A tiny world so every packet can be enumerated: addresses 10.0.0.0-10.0.0.15, ports 0-15.
_BASE = int(ipaddress.IPv4Address("10.0.0.0"))


def _cidr(offset: int, length: int) -> str:
    network = ipaddress.ip_network(f"10.0.0.{offset}/{length}", strict=False)
    return str(network)


_entries = st.lists(
    st.builds(
        lambda number, protocol, allow, offset, length, ports: NaclEntry(
            number, protocol, allow, False, _cidr(offset, length), *(ports or (None, None))
        ),
        st.integers(1, 200),
        st.sampled_from(["-1", "6", "17"]),
        st.booleans(),
        st.integers(0, 15),
        st.integers(28, 32),
        st.one_of(st.none(), st.tuples(st.integers(0, 15), st.integers(0, 15)).map(lambda p: (min(p), max(p)))),
    ),
    max_size=6,
    unique_by=lambda e: e.rule_number,
)


def _packet_verdict(entries: list[NaclEntry], address: int, protocol: int, port: int) -> tuple[bool, int | None]:
    """One packet, the way the AWS documentation describes it: lowest rule number first, first match wins."""
    for entry in sorted(entries, key=lambda e: e.rule_number):
        network = ipaddress.ip_network(entry.cidr)
        if not int(network.network_address) <= address <= int(network.broadcast_address):
            continue
        if entry.protocol != "-1" and int(entry.protocol) != protocol:
            continue
        if entry.protocol != "-1" and entry.port_from is not None and not entry.port_from <= port <= (entry.port_to or 0):
            continue
        return entry.allow, entry.rule_number
    return False, None


@settings(max_examples=300, deadline=None)
@given(
    entries=_entries,
    peer=st.tuples(st.integers(0, 15), st.integers(28, 32)),
    protocol=st.sampled_from([TCP, UDP]),
    ports=st.tuples(st.integers(0, 15), st.integers(0, 15)).map(lambda p: (min(p), max(p))),
)
def test_nacl_range_evaluation_matches_packet_by_packet(
    entries: list[NaclEntry], peer: tuple[int, int], protocol: int, ports: tuple[int, int]
) -> None:
    acl = NetworkAcl("acl-1", "vpc-1", ("subnet-1",), tuple(entries))
    peer_cidr = _cidr(*peer)
    network = ipaddress.ip_network(peer_cidr)
    verdicts = [
        _packet_verdict(entries, address, protocol, port)
        for address in range(int(network.network_address), int(network.broadcast_address) + 1)
        for port in range(ports[0], ports[1] + 1)
    ]
    result = evaluate_nacl(acl, egress=False, peer=peer_cidr, protocol=protocol, ports=ports)
    assert result.allowed == all(allowed for allowed, _ in verdicts)
    denying_rules = [rule for allowed, rule in verdicts if not allowed and rule is not None]
    if not result.allowed:
        assert result.rule == (min(denying_rules) if denying_rules else None)


def test_egress_and_ingress_rules_are_separate_and_families_do_not_mix() -> None:
    acl = NetworkAcl(
        "acl-1",
        "vpc-1",
        (),
        (
            NaclEntry(100, "-1", True, True, "0.0.0.0/0"),
            NaclEntry(100, "-1", True, False, "::/0"),
        ),
    )
    assert evaluate_nacl(acl, egress=True, peer="10.0.0.1", protocol=TCP, ports=(80, 80)).allowed
    assert not evaluate_nacl(acl, egress=False, peer="10.0.0.1", protocol=TCP, ports=(80, 80)).allowed
    assert evaluate_nacl(acl, egress=False, peer="2600::1", protocol=TCP, ports=(80, 80)).allowed
    assert not evaluate_nacl(acl, egress=True, peer="2600::1", protocol=TCP, ports=(80, 80)).allowed


def _group(*rules: SgRule) -> SecurityGroup:
    return SecurityGroup("sg-target", ingress=rules)


def test_security_group_rules() -> None:
    by_group = _group(SgRule("tcp", 8000, 8100, group_ids=("sg-lb",)))
    assert ingress_allows([by_group], TCP, 8080, source_groups=("sg-lb",)).access is Access.ALLOWED
    assert ingress_allows([by_group], TCP, 8200, source_groups=("sg-lb",)).access is Access.DENIED
    assert ingress_allows([by_group], UDP, 8080, source_groups=("sg-lb",)).access is Access.DENIED
    everything = _group(SgRule("-1", group_ids=("sg-lb",)))
    assert ingress_allows([everything], UDP, 53, source_groups=("sg-lb",)).access is Access.ALLOWED
    numeric = _group(SgRule("6", 80, 80, cidrs=("10.0.0.0/16",)))
    verdict = ingress_allows([numeric], TCP, 80, source_cidrs=("10.0.0.0/24", "10.1.0.0/24"))
    assert verdict.access is Access.DENIED
    assert verdict.uncovered == ("10.1.0.0/24",)
    assert ingress_allows([numeric], TCP, 80, source_cidrs=("10.0.0.0/24", "10.0.1.0/24")).access is Access.ALLOWED
    v6 = _group(SgRule("tcp", 80, 80, cidrs=("10.0.0.0/8", "2600:1f18::/56")))
    assert ingress_allows([v6], TCP, 80, source_cidrs=("2600:1f18:0:1::/64",)).access is Access.ALLOWED
    listed = _group(SgRule("tcp", 80, 80, prefix_list_ids=("pl-1",)))
    verdict = ingress_allows([listed], TCP, 80, source_groups=("sg-lb",))
    assert (verdict.access, verdict.prefix_lists) == (Access.PREFIX_LIST, ("pl-1",))


def _table(*routes: Route) -> RouteTable:
    return RouteTable("rtb-1", "vpc-1", ("subnet-1",), False, routes)


def test_routes_by_longest_prefix() -> None:
    local = Route("10.0.0.0/16", "local")
    default = Route("0.0.0.0/0", "igw-1")
    assert route_to(_table(local, default), "10.0.5.5").problem is None
    assert route_to(_table(default), "10.0.5.5").problem is RouteProblem.MISSING_LOCAL
    appliance = Route("10.0.5.0/24", "eni-fw")
    assert route_to(_table(local, appliance), "10.0.5.5").problem is RouteProblem.NOT_LOCAL
    assert route_to(_table(local, appliance), "10.0.6.5").problem is None
    gone = Route("10.0.5.0/24", "eni-gone", "blackhole")
    assert route_to(_table(local, gone), "10.0.5.5").problem is RouteProblem.BLACKHOLE
    # a blackhole inside a destination range catches part of it
    assert route_to(_table(local, gone), "10.0.4.0/23").problem is RouteProblem.BLACKHOLE
    assert route_to(_table(local), "2600::1").problem is RouteProblem.MISSING_LOCAL
