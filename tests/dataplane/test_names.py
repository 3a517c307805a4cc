"""Chain and object names recomputed from API data match kube-proxy's (docs/kube-proxy.md §2's examples)."""

from __future__ import annotations

from exporter.dataplane import names
from exporter.dataplane.names import ServicePortName

P80 = ServicePortName("ns1", "svc1", "p80", "tcp")


def test_iptables_service_port_chains_share_one_hash() -> None:
    assert names.svc_chain(P80) == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert names.svl_chain(P80) == "KUBE-SVL-XPGD46QRK7WJZT7O"
    assert names.ext_chain(P80) == "KUBE-EXT-XPGD46QRK7WJZT7O"
    assert names.fw_chain(P80) == "KUBE-FW-XPGD46QRK7WJZT7O"


def test_iptables_endpoint_chain_hashes_the_endpoint_too() -> None:
    assert names.sep_chain(P80, "10.180.0.1", 80) == "KUBE-SEP-SXIVWICOYRO3J4NJ"


def test_reference_vectors_for_well_known_services() -> None:
    dns = ServicePortName("kube-system", "kube-dns", "dns", "udp")
    api = ServicePortName("default", "kubernetes", "https", "tcp")
    assert names.service_port_hash(dns) == "TCOU7JCQXEZGVUNU"
    assert names.service_port_hash(api) == "NPX46M4PTMTKRN6Y"


def test_unnamed_port_prints_without_a_colon() -> None:
    unnamed = ServicePortName("shop", "web", "", "tcp")
    assert str(unnamed) == "shop/web"
    assert str(P80) == "ns1/svc1:p80"
    assert names.nft_service_base(unnamed) == "shop/web/tcp/"


def test_nftables_names_use_an_eight_character_hash() -> None:
    assert names.nft_service_chain(P80) == "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert names.nft_local_chain(P80) == "local-ULMVA6XW-ns1/svc1/tcp/p80"
    assert names.nft_external_chain(P80) == "external-ULMVA6XW-ns1/svc1/tcp/p80"
    assert names.nft_endpoint_chain(P80, "10.180.0.1", 80) == "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"


def test_ipv6_endpoints_are_bracketed_for_iptables_and_dotted_for_nftables() -> None:
    assert names.join_host_port("fd00::1", 80) == "[fd00::1]:80"
    assert names.nft_endpoint_chain(P80, "fd00::1", 80).endswith("__fd00..1/80")
    assert names.sep_chain(P80, "fd00::1", 80) != names.sep_chain(P80, "fd00::2", 80)


def test_over_long_nft_names_are_cut_and_marked() -> None:
    long_name = "x" * 300
    cut = names.hash_and_truncate(long_name)
    assert len(cut) == names.NFT_NAME_LIMIT and cut.endswith("...")
