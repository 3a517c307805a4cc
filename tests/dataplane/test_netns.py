"""Real rules in a real network namespace: loaded with iptables-restore / nft as kube-proxy loads them,
read back by lbdoctor's readers, compared with the API. Every fault is created for real."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from exporter.dataplane.analysis import Analysis
from exporter.dataplane.monitor import analyse_raw
from exporter.dataplane.readers import DataplaneReader, RawRules, Runner
from exporter.dataplane.report import RulesState
from tests.dataplane.conftest import Netns
from tests.dataplane.generator import (
    NODE,
    OTHER_NODE,
    Ep,
    Svc,
    iptables_restore,
    iptables_save,
    kubelet_hint,
    nft_script,
    snapshot,
    with_fault,
)

pytestmark = pytest.mark.root

SERVICES = [
    Svc(
        "web",
        "172.20.0.10",
        (Ep("10.244.1.5", pod="web-1"), Ep("10.244.2.6", node=OTHER_NODE), Ep("10.244.1.7")),
        node_port=30080,
        load_balancer=True,
    ),
    Svc(
        "api",
        "172.20.0.11",
        (Ep("10.244.1.8", pod="api-1"),),
        node_port=30081,
        load_balancer=True,
        external_local=True,
        health_check_node_port=32000,
    ),
    Svc("empty", "172.20.0.12", (), node_port=30082),
    Svc(
        "dns",
        "172.20.0.14",
        (Ep("10.244.1.2"), Ep("10.244.1.3")),
        port=53,
        port_name="dns",
        protocol="UDP",
        target_port=53,
    ),
]
BACKENDS = ["legacy", "nft"]

FAULTS = [
    pytest.param(
        with_fault(SERVICES, "web", programmed=("10.244.2.6", "10.244.1.7")),
        {("endpoint_missing", "web", ("10.244.1.5", 8080))},
        id="endpoint-missing",
    ),
    pytest.param(
        with_fault(SERVICES, "web", programmed=("10.244.1.5", "10.244.2.6", "10.244.1.7", "10.244.9.9")),
        {("endpoint_stale", "web", ("10.244.9.9", 8080))},
        id="stale-endpoint",
    ),
    pytest.param(
        with_fault(SERVICES, "dns", reject=True),
        {("service_rules_missing", "dns", None), ("rejecting", "dns", None)},
        id="reject-while-ready",
    ),
    pytest.param(
        with_fault(SERVICES, "web", no_dispatch=True),
        {("service_rules_missing", "web", None)},
        id="service-rule-missing",
    ),
    pytest.param(
        with_fault(SERVICES, "api", no_node_port=True, no_health_check_port=True),
        {("node_port_missing", "api", None), ("health_check_port_missing", "api", None)},
        id="node-ports-missing",
    ),
]


def summary(analysis: Analysis) -> set[tuple[str, str, tuple[str, int] | None]]:
    assert analysis.state is RulesState.COMPARED, analysis.detail
    return {(f.problem.value, f.spn.name, f.endpoint) for f in analysis.findings}


async def read(
    netns: Netns, api: Sequence[Svc], *, mode: str = "auto", families: Sequence[str] = ("IPv4",)
) -> tuple[RawRules, Analysis]:
    raw = await DataplaneReader(Runner(netns.prefix), mode=mode).read(families)
    return raw, analyse_raw(raw, snapshot(api), NODE)


@pytest.mark.parametrize("backend", BACKENDS)
def test_generator_prints_what_the_real_iptables_save_prints(netns: Netns, backend: str) -> None:
    netns.restore(iptables_restore(SERVICES), backend)
    real = netns.save("nat", backend) + netns.save("filter", backend)
    ours = iptables_save(SERVICES)

    def rules(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert rules(real) == rules(ours)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_healthy_rules_report_nothing(netns: Netns, backend: str) -> None:
    netns.restore(kubelet_hint(), backend)
    netns.restore(iptables_restore(SERVICES), backend)
    raw, analysis = await read(netns, SERVICES)
    assert (raw.mode, raw.backend) == ("iptables", backend)
    assert summary(analysis) == set()
    assert analysis.ports == 4 and analysis.endpoints == 6  # web 3, api 1 (one endpoint in two chains), dns 2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("rules", "expected"), FAULTS)
async def test_each_fault_is_found_with_its_service_and_endpoint(
    netns: Netns, backend: str, rules: list[Svc], expected: set[tuple[str, str, tuple[str, int] | None]]
) -> None:
    netns.restore(kubelet_hint(), backend)
    netns.restore(iptables_restore(rules), backend)
    _raw, analysis = await read(netns, SERVICES)
    assert summary(analysis) == expected


async def test_large_cluster_mode_rules_without_comments(netns: Netns) -> None:
    netns.restore(iptables_restore(SERVICES, large=True), "nft")
    assert "-> 10.244.1.5:8080" not in netns.save("nat", "nft")
    _raw, analysis = await read(netns, SERVICES, mode="iptables")
    assert summary(analysis) == set()


async def test_kubelets_hint_picks_the_backend_over_leftovers(netns: Netns) -> None:
    # kube-proxy writes to legacy (the hint is there); stale rules left in the nft backend must be ignored.
    netns.restore(kubelet_hint(), "legacy")
    netns.restore(iptables_restore(SERVICES), "legacy")
    netns.restore(iptables_restore(with_fault(SERVICES, "web", programmed=("10.244.9.9",))), "nft")
    raw, analysis = await read(netns, SERVICES)
    assert raw.backend == "legacy" and summary(analysis) == set()
    assert any("compared the legacy one (kubelet's hint chains name it)" in note for note in analysis.notes)


async def test_rules_in_both_backends_without_a_hint_are_noted(netns: Netns) -> None:
    netns.restore(iptables_restore(SERVICES), "legacy")
    netns.restore(iptables_restore(SERVICES), "nft")
    raw, analysis = await read(netns, SERVICES)
    assert raw.backend == "nft"
    assert any(
        "both iptables backends; compared the nft one (kubelet's hint chains are missing)" in n for n in analysis.notes
    )


async def test_ipv6_rules_are_read_with_ip6tables(netns: Netns) -> None:
    v6 = [Svc("web6", "fd00:10:96::a", (Ep("fd00:244::5"), Ep("fd00:244::6")), node_port=30100)]
    api = [*SERVICES, *v6]
    netns.restore(iptables_restore(SERVICES), "nft")
    netns.restore(iptables_restore(with_fault(v6, "web6", programmed=("fd00:244::5",))), "nft", ipv6=True)
    raw, analysis = await read(netns, api, families=("IPv4", "IPv6"))
    assert set(raw.iptables) == {"IPv4", "IPv6"}
    assert analysis.families == ("IPv4", "IPv6")
    assert summary(analysis) == {("endpoint_missing", "web6", ("fd00:244::6", 8080))}


async def test_a_truncated_real_dump_is_unreadable(netns: Netns) -> None:
    netns.restore(iptables_restore(SERVICES), "legacy")
    raw, _ = await read(netns, SERVICES, mode="iptables")
    data = raw.iptables["IPv4"]
    cut = RawRules(raw.mode, raw.backend, {"IPv4": data[: len(data) // 2]})
    analysis = analyse_raw(cut, snapshot(SERVICES), NODE)
    assert analysis.state is RulesState.UNREADABLE and "truncated" in analysis.detail


async def test_ipvs_mode_is_detected_and_not_compared(netns: Netns) -> None:
    netns.restore(
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODE-PORT - [0:0]\n:KUBE-LOAD-BALANCER - [0:0]\n:KUBE-POSTROUTING - [0:0]\n"
        "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT\nCOMMIT\n",
        "nft",
    )
    raw, analysis = await read(netns, SERVICES)
    assert raw.mode == "ipvs" and analysis.state is RulesState.UNSUPPORTED


async def test_nothing_of_kube_proxys_in_a_fresh_namespace(netns: Netns) -> None:
    raw, analysis = await read(netns, SERVICES)
    assert raw.mode is None and analysis.state is RulesState.NOT_FOUND
    assert "nft -j list table ip kube-proxy" in analysis.detail and "iptables-legacy-save" in analysis.detail


# nftables mode ----------------------------------------------------------------------------------

NFT_FAULTS = [
    pytest.param(
        with_fault(SERVICES, "web", programmed=("10.244.2.6", "10.244.1.7")),
        {("endpoint_missing", "web", ("10.244.1.5", 8080))},
        id="endpoint-missing",
    ),
    pytest.param(
        with_fault(SERVICES, "web", programmed=("10.244.1.5", "10.244.2.6", "10.244.1.7", "10.244.9.9")),
        {("endpoint_stale", "web", ("10.244.9.9", 8080))},
        id="stale-endpoint",
    ),
    pytest.param(
        with_fault(SERVICES, "dns", reject=True),
        {("service_rules_missing", "dns", None), ("rejecting", "dns", None)},
        id="reject-while-ready",
    ),
    pytest.param(
        with_fault(SERVICES, "api", no_node_port=True),
        {("node_port_missing", "api", None)},
        id="node-port-missing",
    ),
]


async def test_nftables_mode_healthy(netns: Netns) -> None:
    netns.nft(nft_script(SERVICES))
    raw, analysis = await read(netns, SERVICES)
    assert raw.mode == "nftables"
    assert summary(analysis) == set() and analysis.ports == 4


@pytest.mark.parametrize(("rules", "expected"), NFT_FAULTS)
async def test_nftables_faults(
    netns: Netns, rules: list[Svc], expected: set[tuple[str, str, tuple[str, int] | None]]
) -> None:
    netns.nft(nft_script(rules))
    _raw, analysis = await read(netns, SERVICES, mode="nftables")
    assert summary(analysis) == expected


async def test_nftables_ipv6_table(netns: Netns) -> None:
    v6 = [Svc("web6", "fd00:10:96::a", (Ep("fd00:244::5"), Ep("fd00:244::6")), node_port=30100)]
    netns.nft(nft_script(SERVICES))
    netns.nft(nft_script(with_fault(v6, "web6", programmed=("fd00:244::5", "fd00:244::9")), family="ip6"))
    _raw, analysis = await read(netns, [*SERVICES, *v6], families=("IPv4", "IPv6"))
    assert summary(analysis) == {
        ("endpoint_missing", "web6", ("fd00:244::6", 8080)),
        ("endpoint_stale", "web6", ("fd00:244::9", 8080)),
    }


async def test_the_backend_is_remembered_between_rounds(netns: Netns) -> None:
    netns.restore(kubelet_hint(), "nft")
    netns.restore(iptables_restore(SERVICES), "nft")
    reader = DataplaneReader(Runner(netns.prefix), mode="iptables")
    first, second = await reader.read(), await reader.read()
    assert first.backend == second.backend == "nft"
    assert any("legacy" in command for command in first.commands)  # both looked at once
    assert second.commands == ("iptables-nft-save",)  # then only the one kube-proxy uses
