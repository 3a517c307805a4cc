"""Offline analysis of a saved dump (``lbdoctor diagnose --node NAME --iptables-save-file FILE``)."""

from __future__ import annotations

import json

import pytest

from exporter.dataplane.offline import analyse
from exporter.model.objects import ObjectMeta, Service
from exporter.model.results import Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from tests.dataplane.conftest import Netns
from tests.dataplane.generator import (
    NODE,
    OTHER_NODE,
    Ep,
    Svc,
    iptables_restore,
    iptables_save,
    nft_script,
    snapshot,
    with_fault,
)

NLB = {
    "service.beta.kubernetes.io/aws-load-balancer-type": "external",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "instance",
}
SERVICES = [
    Svc(
        "web",
        "172.20.0.10",
        (Ep("10.244.1.5", pod="web-1"), Ep("10.244.1.7", pod="web-2")),
        node_port=30080,
        load_balancer=True,
    ),
    Svc("dns", "172.20.0.14", (Ep("10.244.1.2"),), port=53, port_name="dns", protocol="UDP", target_port=53),
]


def cluster() -> ClusterSnapshot:
    """The generator's cluster, with web behind an NLB (instance targets) so it gets an ok verdict."""
    base = snapshot(SERVICES)
    web = base.services["shop/web"]
    nlb = Service(ObjectMeta("shop", "web", annotations=NLB), "LoadBalancer", web.selector, web.ports, web.cluster_ip)
    services = [nlb if s.meta.key == "shop/web" else s for s in base.services.values()]
    return ClusterSnapshot.of(
        services=services, endpoint_slices=base.endpoint_slices.values(), nodes=base.nodes.values()
    )


def test_a_healthy_dump() -> None:
    results = analyse(cluster(), NODE, iptables_save=iptables_save(SERVICES), now=0.0)
    assert [(r.object.kind, r.object.name, r.status) for r in results] == [
        ("Node", NODE, Status.OK),
        ("Service", "web", Status.OK),
    ]
    assert "iptables mode: 2 Service ports and 3 endpoints compared" in results[0].message


def test_every_difference_is_reported_without_a_grace_period() -> None:
    dump = iptables_save(with_fault(SERVICES, "web", programmed=("10.244.1.7", "10.244.9.9")))
    results = analyse(cluster(), NODE, iptables_save=dump, now=0.0)
    failing = sorted((r.reason, r.target.ip if r.target else None) for r in results if r.status is Status.FAIL)
    assert failing == [(Reason.ENDPOINT_RULES_MISSING, "10.244.1.5"), (Reason.STALE_ENDPOINT_RULES, "10.244.9.9")]


def test_a_dump_from_another_node() -> None:
    [result] = analyse(cluster(), NODE, iptables_save=iptables_save(SERVICES, OTHER_NODE))
    assert result.status is Status.UNKNOWN and result.reason is Reason.KUBE_PROXY_RULES_FROM_ANOTHER_NODE
    assert "10.0.2.45" in result.message and "capture the rules on node" in result.remedy


def test_a_truncated_dump() -> None:
    dump = iptables_save(SERVICES)
    [result] = analyse(cluster(), NODE, iptables_save=dump[: len(dump) // 2])
    assert result.reason is Reason.KUBE_PROXY_RULES_UNREADABLE and "truncated" in result.message
    assert "capture the rules again" in result.remedy


def test_garbage_and_wrong_files() -> None:
    [result] = analyse(cluster(), NODE, iptables_save="hello\nworld\n")
    assert result.reason is Reason.KUBE_PROXY_NOT_FOUND
    [result] = analyse(cluster(), NODE, nft_json="{not json")
    assert result.reason is Reason.KUBE_PROXY_RULES_UNREADABLE and "not valid nft JSON" in result.message
    [result] = analyse(cluster(), NODE, nft_json=json.dumps({"nftables": [{"metainfo": {}}]}))
    assert result.reason is Reason.KUBE_PROXY_NOT_FOUND
    with pytest.raises(ValueError, match="give the saved rules"):
        analyse(cluster(), NODE)


def test_saved_dumps_of_real_rules(netns: Netns) -> None:
    """What a person hands in: the whole `iptables-save` of a node, or `nft -j list ruleset`."""
    netns.restore(iptables_restore(with_fault(SERVICES, "web", programmed=("10.244.1.7",))), "nft")
    whole = netns.run(["iptables-nft-save"])
    failing = [r for r in analyse(cluster(), NODE, iptables_save=whole) if r.status is Status.FAIL]
    assert [(r.reason, r.object.name, r.target.pod if r.target else None) for r in failing] == [
        (Reason.ENDPOINT_RULES_MISSING, "web", "web-1")
    ]
    netns.nft(nft_script(SERVICES))
    ruleset = netns.run(["nft", "-j", "list", "ruleset"])
    results = analyse(cluster(), NODE, nft_json=ruleset)
    assert [r.status for r in results] == [Status.OK, Status.OK]
    assert "nftables mode" in results[0].message
