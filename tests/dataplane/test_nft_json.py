"""The nft JSON parser and the nftables view read kube-proxy's objects in the shape ``nft -j`` prints."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from exporter.dataplane.nft_json import parse_nft_json
from exporter.dataplane.nft_view import NftView

SERVICE = "service-ULMVA6XW-ns1/svc1/tcp/p80"
ENDPOINT = "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"


def _table(family: str = "ip") -> list[dict[str, Any]]:
    """kube-proxy's objects for one Service with one endpoint, as nft 1.0 prints them with -j."""
    t = {"family": family, "table": "kube-proxy"}
    return [
        {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
        {"table": {"family": family, "name": "kube-proxy", "handle": 1}},
        {"set": {**t, "name": "cluster-ips", "type": "ipv4_addr", "handle": 5, "elem": ["172.30.0.41"]}},
        {
            "map": {
                **t,
                "name": "service-ips",
                "type": ["ipv4_addr", "inet_proto", "inet_service"],
                "map": "verdict",
                "handle": 6,
                "elem": [[{"concat": ["172.30.0.41", "tcp", 80]}, {"goto": {"target": SERVICE}}]],
            }
        },
        {
            "map": {
                **t,
                "name": "no-endpoint-services",
                "type": ["ipv4_addr", "inet_proto", "inet_service"],
                "map": "verdict",
                "handle": 8,
                "elem": [
                    [
                        {"elem": {"val": {"concat": ["172.30.0.42", "tcp", 80]}, "comment": "ns2/svc2:p80"}},
                        {"goto": {"target": "reject-chain"}},
                    ]
                ],
            }
        },
        {"map": {**t, "name": "service-nodeports", "type": ["inet_proto", "inet_service"], "map": "verdict"}},
        {"chain": {**t, "name": "reject-chain", "handle": 1}},
        {"chain": {**t, "name": SERVICE, "handle": 2}},
        {"chain": {**t, "name": ENDPOINT, "handle": 3}},
        {
            "rule": {
                **t,
                "chain": SERVICE,
                "handle": 11,
                "expr": [
                    {
                        "vmap": {
                            "key": {"numgen": {"mode": "random", "mod": 1, "offset": 0}},
                            "data": {"set": [[0, {"goto": {"target": ENDPOINT}}]]},
                        }
                    }
                ],
            }
        },
        {
            "rule": {
                **t,
                "chain": ENDPOINT,
                "handle": 13,
                "expr": [
                    {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
                    {"dnat": {"addr": "10.180.0.1", "port": 80}},
                ],
            }
        },
        {"counter": {**t, "name": "packets", "handle": 20}},
    ]


def _text(items: list[dict[str, Any]]) -> str:
    return json.dumps({"nftables": items})


def test_maps_sets_chains_and_rules() -> None:
    ruleset = parse_nft_json(_text(_table()))
    assert ruleset.error is None
    table = ruleset.table("ip")
    assert table is not None
    assert table.sets["cluster-ips"] == [("172.30.0.41",)]
    assert table.maps["service-ips"] == [(("172.30.0.41", "tcp", 80), ("goto", SERVICE), None)]
    assert table.maps["no-endpoint-services"] == [
        (("172.30.0.42", "tcp", 80), ("goto", "reject-chain"), "ns2/svc2:p80")
    ]
    assert table.maps["service-nodeports"] == []  # an empty map has no "elem"
    assert {SERVICE, ENDPOINT, "reject-chain"} <= table.chains
    assert ruleset.unknown_objects == 1 and "counter not read" in ruleset.examples[0]


def test_view_reads_dispatch_endpoints_and_rejects() -> None:
    view = NftView.build(parse_nft_json(_text(_table())), "ip")
    assert view is not None and view.family == "IPv4"
    assert view.cluster_target("172.30.0.41", "tcp", 80) == SERVICE
    assert view.endpoints(SERVICE) == frozenset({("10.180.0.1", 80)})
    assert view.endpoints("service-NOPE-x/y/tcp/") is None
    assert view.cluster_rejected("172.30.0.42", "tcp", 80) == 'reject "ns2/svc2:p80"'
    assert view.health_check_port_open(32000) is None  # nftables mode has no such rule to compare


def test_endpoint_address_falls_back_to_the_chain_name_for_unknown_rule_shapes() -> None:
    items = _table()
    for item in items:
        rule = item.get("rule")
        if rule and rule["chain"] == ENDPOINT:
            rule["expr"] = [{"dnat": {"family": "ip", "addr": {"unknown": 1}, "port": "80"}}]
    view = NftView.build(parse_nft_json(_text(items)), "ip")
    assert view is not None and view.endpoints(SERVICE) == frozenset({("10.180.0.1", 80)})


def test_two_documents_in_one_file_hold_both_families() -> None:
    ipv6 = _table("ip6")
    ruleset = parse_nft_json(_text(_table()) + "\n" + _text(ipv6))
    assert ruleset.error is None and set(ruleset.tables) == {("ip", "kube-proxy"), ("ip6", "kube-proxy")}
    view = NftView.build(ruleset, "ip6")
    assert view is not None and view.family == "IPv6"


def test_truncated_and_foreign_text_give_an_error_not_an_exception() -> None:
    text = _text(_table())
    assert "truncated?" in (parse_nft_json(text[: len(text) // 2]).error or "")
    assert parse_nft_json("").error == "empty: no nft JSON document"
    assert "no top-level" in (parse_nft_json('{"ruleset": []}').error or "")
    assert NftView.build(parse_nft_json(_text([])), "ip") is None


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["table", "chain", "map", "rule", "set", "family", "name", "elem", "expr", "nftables"]),
                inner,
                max_size=3,
            )
        ),
        max_leaves=20,
    )
)
def test_any_json_is_read_without_raising(document: Any) -> None:
    ruleset = parse_nft_json(json.dumps({"nftables": document}))
    for family in ("ip", "ip6"):
        view = NftView.build(ruleset, family)
        if view is not None:
            for chain in view.table.chains:
                view.endpoints(chain)
                view.jumps(chain)
