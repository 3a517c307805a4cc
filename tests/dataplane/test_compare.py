"""Each way kube-proxy's rules can differ from the API is found, named, and nothing is found when they agree.

Rules come from the generator in iptables-save's own format (proved equal to the real tool's output
by a root test), so these run anywhere; tests/dataplane/test_netns.py repeats the faults for real.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter.dataplane import names
from exporter.dataplane.analysis import analyse_iptables
from exporter.dataplane.compare import Finding, Problem
from exporter.dataplane.expected import expected_state
from exporter.dataplane.names import ServicePortName
from exporter.dataplane.report import RulesState
from tests.dataplane.generator import NODE, OTHER_NODE, Ep, Svc, iptables_save, snapshot, with_fault

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
        "remote",
        "172.20.0.13",
        (Ep("10.244.2.9", node=OTHER_NODE),),
        node_port=30083,
        load_balancer=True,
        external_local=True,
        health_check_node_port=32001,
    ),
    Svc(
        "dns",
        "172.20.0.14",
        (Ep("10.244.1.2"), Ep("10.244.1.3")),
        port=53,
        port_name="dns",
        protocol="UDP",
        target_port=53,
    ),
    Svc("unnamed", "172.20.0.15", (Ep("10.244.1.4"),), port_name=""),
]


def findings(api: Sequence[Svc], rules: Sequence[Svc] | None = None, **options: object) -> list[Finding]:
    text = iptables_save(rules if rules is not None else api, **options)  # type: ignore[arg-type]
    analysis = analyse_iptables(expected_state(snapshot(api), NODE), {None: text})  # family read from the dump
    assert analysis.state is RulesState.COMPARED, analysis.detail
    return list(analysis.findings)


def summary(found: list[Finding]) -> set[tuple[str, str, tuple[str, int] | None]]:
    return {(f.problem.value, f.spn.name, f.endpoint) for f in found}


def test_rules_that_match_the_api_report_nothing() -> None:
    assert findings(SERVICES) == []


def test_large_cluster_mode_without_comments_reports_nothing() -> None:
    text = iptables_save(SERVICES, large=True)
    assert "-> 10.244.1.5:8080" not in text  # kube-proxy dropped the endpoint comments
    assert findings(SERVICES, large=True) == []


def test_missing_endpoint_names_service_port_endpoint_pod_and_chain() -> None:
    found = findings(SERVICES, with_fault(SERVICES, "web", programmed=("10.244.2.6", "10.244.1.7")))
    assert summary(found) == {("endpoint_missing", "web", ("10.244.1.5", 8080))}
    [finding] = found
    assert finding.pod == "web-1" and str(finding.spn) == "shop/web:http"
    assert "KUBE-SVC-67NZLRHBNDSAWJRO does not send traffic to 10.244.1.5:8080 (KUBE-SEP-" in finding.detail


def test_stale_endpoint_is_a_dnat_to_an_address_no_slice_lists() -> None:
    rules = with_fault(SERVICES, "web", programmed=("10.244.1.5", "10.244.2.6", "10.244.1.7", "10.244.9.9"))
    found = findings(SERVICES, rules)
    assert summary(found) == {("endpoint_stale", "web", ("10.244.9.9", 8080))}
    assert "still sends traffic to 10.244.9.9:8080, which no EndpointSlice lists" in found[0].detail


def test_replaced_pod_shows_as_one_missing_and_one_stale_endpoint() -> None:
    api = with_fault(SERVICES, "dns", endpoints=(Ep("10.244.1.2"), Ep("10.244.1.30")))
    assert summary(findings(api, SERVICES)) == {
        ("endpoint_missing", "dns", ("10.244.1.30", 53)),
        ("endpoint_stale", "dns", ("10.244.1.3", 53)),
    }


def test_reject_has_no_endpoints_while_endpoints_are_ready() -> None:
    found = findings(SERVICES, with_fault(SERVICES, "web", reject=True))
    assert summary(found) == {
        ("service_rules_missing", "web", None),
        ("rejecting", "web", None),
        ("node_port_missing", "web", None),
        ("node_port_rejecting", "web", None),
    }
    rejecting = next(f for f in found if f.problem is Problem.REJECTING)
    assert (
        rejecting.detail
        == 'REJECT "shop/web:http has no endpoints" for 172.20.0.10:80/tcp while 3 endpoint(s) are ready'
    )
    assert rejecting.port == 80


def test_missing_service_dispatch() -> None:
    found = findings(SERVICES, with_fault(SERVICES, "unnamed", no_dispatch=True))
    assert summary(found) == {("service_rules_missing", "unnamed", None)}
    chain = names.svc_chain(ServicePortName("shop", "unnamed", "", "tcp"))
    assert found[0].detail == f"no nat KUBE-SERVICES rule sends 172.20.0.15:80/tcp to {chain}"


def test_new_service_kube_proxy_has_not_programmed() -> None:
    api = [*SERVICES, Svc("new", "172.20.0.16", (Ep("10.244.1.40"),), node_port=30090)]
    found = findings(api, SERVICES)
    assert summary(found) == {("service_rules_missing", "new", None), ("node_port_missing", "new", None)}
    assert "chain KUBE-SVC-" in found[0].detail and "does not exist" in found[0].detail


def test_node_port_and_health_check_node_port_missing() -> None:
    found = findings(SERVICES, with_fault(SERVICES, "api", no_node_port=True, no_health_check_port=True))
    assert summary(found) == {("node_port_missing", "api", None), ("health_check_port_missing", "api", None)}
    hc = next(f for f in found if f.problem is Problem.HEALTH_CHECK_PORT_MISSING)
    assert hc.detail == "filter KUBE-NODEPORTS has no ACCEPT rule for health check node port 32000/tcp"
    assert hc.port == 32000


def test_local_endpoint_missing_from_the_svl_chain() -> None:
    # kube-proxy programmed the pod for ClusterIP traffic but lost it from the Local (NodePort) chain.
    api = with_fault(SERVICES, "api", endpoints=(Ep("10.244.1.8", pod="api-1"), Ep("10.244.1.9", pod="api-2")))
    text = iptables_save(api)
    svl_line = next(line for line in text.splitlines() if line.startswith("-A KUBE-SVL-") and "10.244.1.9" in line)
    analysis = analyse_iptables(expected_state(snapshot(api), NODE), {"IPv4": text.replace(svl_line + "\n", "")})
    assert summary(list(analysis.findings)) == {("endpoint_missing", "api", ("10.244.1.9", 8080))}
    assert "KUBE-SVL-" in analysis.findings[0].detail


def test_remote_only_local_service_needs_no_local_chain_here() -> None:
    # externalTrafficPolicy Local and no endpoint on this node: the NodePort is dropped on purpose.
    text = iptables_save(SERVICES)
    assert '"shop/remote:http has no local endpoints"' in text
    assert [f for f in findings(SERVICES) if f.spn.name == "remote"] == []


def test_duplicate_rules_and_unknown_chains_are_harmless() -> None:
    text = iptables_save(SERVICES)
    dns_jump = next(line for line in text.splitlines() if line.startswith("-A KUBE-SVC-") and "10.244.1.2:53" in line)
    doubled = text.replace(dns_jump, f"{dns_jump}\n{dns_jump}").replace(
        ":AWS-SNAT-CHAIN-0 - [0:0]", ":AWS-SNAT-CHAIN-0 - [0:0]\n:AWS-SNAT-CHAIN-1 - [0:0]\n:CILIUM_PRE_nat - [0:0]"
    )
    analysis = analyse_iptables(expected_state(snapshot(SERVICES), NODE), {"IPv4": doubled})
    assert analysis.state is RulesState.COMPARED and analysis.findings == ()


def test_ipv6_services_compare_against_ip6tables_rules() -> None:
    v6 = [Svc("web6", "fd00:10:96::a", (Ep("fd00:244::5"), Ep("fd00:244::6")), node_port=30100)]
    assert findings(v6) == []
    found = findings(v6, with_fault(v6, "web6", programmed=("fd00:244::5",)))
    assert summary(found) == {("endpoint_missing", "web6", ("fd00:244::6", 8080))}
    assert found[0].family == "IPv6" and "[fd00:244::6]:8080" in found[0].detail


def test_a_truncated_dump_is_unreadable_not_a_flood_of_missing_rules() -> None:
    text = iptables_save(SERVICES)
    analysis = analyse_iptables(expected_state(snapshot(SERVICES), NODE), {"IPv4": text[: len(text) // 3]})
    assert analysis.state is RulesState.UNREADABLE and analysis.failure == "truncated"
    assert "never reaches COMMIT" in analysis.detail and analysis.findings == ()


def test_a_dump_without_kube_proxy_chains_is_not_found() -> None:
    analysis = analyse_iptables(
        expected_state(snapshot(SERVICES), NODE), {"IPv4": "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"}
    )
    assert analysis.state is RulesState.NOT_FOUND


def test_ipvs_mode_is_reported_unsupported_not_misread() -> None:
    text = "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODE-PORT - [0:0]\n:KUBE-LOAD-BALANCER - [0:0]\n" + (
        "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT\nCOMMIT\n"
    )
    analysis = analyse_iptables(expected_state(snapshot(SERVICES), NODE), {"IPv4": text})
    assert analysis.state is RulesState.UNSUPPORTED and "IPVS" in analysis.detail


def test_without_the_filter_table_rejects_are_not_compared_and_a_note_says_so() -> None:
    text = iptables_save(SERVICES, tables_wanted=("nat",))
    analysis = analyse_iptables(expected_state(snapshot(SERVICES), NODE), {"IPv4": text})
    assert analysis.state is RulesState.COMPARED and analysis.findings == ()
    assert any("no filter table" in note for note in analysis.notes)


def test_garbled_lines_are_noted_and_the_rest_compared() -> None:
    text = iptables_save(SERVICES).replace("COMMIT", "-A-garbage ~~\nCOMMIT", 1)
    analysis = analyse_iptables(expected_state(snapshot(SERVICES), NODE), {"IPv4": text})
    assert analysis.state is RulesState.COMPARED and analysis.unknown == 1 and analysis.findings == ()
    assert any("1 line(s) not understood" in note for note in analysis.notes)


def test_another_nodes_dump_is_recognised_when_checking_a_hand_in() -> None:
    text = iptables_save(SERVICES, OTHER_NODE)
    analysis = analyse_iptables(expected_state(snapshot(SERVICES), NODE), {None: text}, check_node=True)
    assert analysis.state is RulesState.OTHER_NODE
    assert "SNAT rule uses 10.0.2.45, not an address of node ip-10-0-1-23.ec2.internal (10.0.1.23)" in analysis.detail
    api = with_fault(
        SERVICES, "remote", endpoints=(Ep("10.244.2.9", node=OTHER_NODE), Ep("10.244.2.10", node=OTHER_NODE))
    )
    analysis = analyse_iptables(
        expected_state(snapshot(api), NODE), {None: iptables_save(api, OTHER_NODE, aws=False)}, check_node=True
    )
    assert analysis.state is RulesState.OTHER_NODE and "on node ip-10-0-2-45.ec2.internal" in analysis.detail


def test_this_nodes_own_dump_passes_the_node_check() -> None:
    analysis = analyse_iptables(
        expected_state(snapshot(SERVICES), NODE), {None: iptables_save(SERVICES)}, check_node=True
    )
    assert analysis.state is RulesState.COMPARED and analysis.families == ("IPv4",)
