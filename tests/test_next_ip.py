"""The loopback "pod IPs" the tests hand out are distinct: two pods on one address would make one of them
fail to listen (a host-network node agent's node IP and its own 127.0.0.1 once collided at the 256th)."""

from __future__ import annotations

from tests.conftest import next_ip


def test_a_thousand_addresses_are_all_distinct_and_none_ends_in_zero() -> None:
    addresses = [next_ip() for _ in range(1000)]
    assert len(set(addresses)) == len(addresses)
    assert not any(address.endswith(".0") for address in addresses)
