"""From captured rule text to findings: parse, check the dump is usable and this node's, compare. Pure.

Shared by the node agent (which runs it in a worker thread) and offline analysis of a saved dump.
A dump that cannot be trusted (truncated, IPVS mode, another node's) yields a state and a one-line
reason instead of findings: partial rules would otherwise read as thousands of missing ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exporter.dataplane.compare import IPTABLES, NFTABLES, Finding, Naming, RuleView, compare
from exporter.dataplane.expected import IPV4, IPV6, ExpectedState
from exporter.dataplane.iptables_save import IptablesSave, parse_iptables_save
from exporter.dataplane.iptables_view import IptablesView, looks_like_ipvs, snat_sources
from exporter.dataplane.nft_json import NftRuleset, parse_nft_json
from exporter.dataplane.nft_view import NftView
from exporter.dataplane.report import RulesState

IPVS_DETAIL = (
    "kube-proxy runs in IPVS mode (KUBE-NODE-PORT / KUBE-LOAD-BALANCER chains), which lbdoctor does not compare; "
    "IPVS is deprecated upstream: consider nftables mode"
)


@dataclass(frozen=True)
class Analysis:
    state: RulesState
    detail: str
    findings: tuple[Finding, ...] = ()
    families: tuple[str, ...] = ()
    ports: int = 0
    endpoints: int = 0
    lines: int = 0
    unknown: int = 0
    notes: tuple[str, ...] = ()
    failure: str | None = None  # UNREADABLE: truncated | invalid_output


def _unknown_note(what: str, count: int, examples: Iterable[str]) -> str:
    first = next(iter(examples), "")
    return f"{what}: {count} line(s) not understood and skipped" + (f" (first: {first})" if first else "")


def other_node(expected: ExpectedState, view: RuleView, naming: Naming, snat: set[str] | None = None) -> str | None:
    """Why these rules look like another node's, or None. Used for dumps handed in by a person."""
    if snat and expected.node_addresses and not snat & expected.node_addresses:
        return (
            f"its AWS VPC CNI SNAT rule uses {', '.join(sorted(snat))}, not an address of node {expected.node} "
            f"({', '.join(sorted(expected.node_addresses))})"
        )
    votes: Counter[str] = Counter()
    for port in expected.family(view.family):
        if not port.uses_local_endpoints:
            continue
        for endpoint in view.endpoints(naming.local_chain(port.spn)) or ():
            node = port.nodes.get(endpoint)
            if node:
                votes[node] += 1
    if votes and votes[expected.node] == 0:
        node, count = votes.most_common(1)[0]
        if count >= 2:
            return (
                f"its Local-policy chains send traffic to {count} endpoints the API places on node {node} "
                f"and to none on node {expected.node}"
            )
    return None


def _missing_families(expected: ExpectedState, compared: Iterable[str]) -> list[str]:
    done = set(compared)
    return [
        f"{family} Services were not compared: no {family} rules were read"
        for family in (IPV4, IPV6)
        if family not in done and expected.family(family)
    ]


def analyse_iptables(
    expected: ExpectedState, dumps: Mapping[str | None, str], *, check_node: bool = False, source: str = "iptables-save"
) -> Analysis:
    """``dumps``: IP family → ``iptables-save`` text (nat, and filter if read). Family None: guess it."""
    findings: list[Finding] = []
    notes: list[str] = []
    families: list[str] = []
    lines = unknown = ports = endpoints = 0
    for family, text in dumps.items():
        dump: IptablesSave = parse_iptables_save(text)
        lines += dump.lines
        unknown += dump.unknown_lines
        what = f"{source} ({family})" if family else source
        if dump.truncated:
            open_tables = ", ".join(name for name, table in dump.tables.items() if not table.committed)
            return Analysis(
                RulesState.UNREADABLE,
                f"{what} output is truncated: table {open_tables} never reaches COMMIT",
                lines=lines,
                unknown=unknown,
                failure="truncated",
            )
        if looks_like_ipvs(dump):
            return Analysis(RulesState.UNSUPPORTED, IPVS_DETAIL, lines=lines, unknown=unknown)
        if dump.unknown_lines:
            notes.append(_unknown_note(what, dump.unknown_lines, dump.examples))
        view = IptablesView.build(dump, family)
        if view is None or not view.has_kube_proxy_rules:
            continue
        if view.filter is None:
            notes.append(f"{what}: no filter table, so REJECT and health check node port rules were not compared")
        if check_node:
            foreign = other_node(expected, view, IPTABLES, snat_sources(dump))
            if foreign:
                return Analysis(
                    RulesState.OTHER_NODE, f"these rules are not node {expected.node}'s: {foreign}", lines=lines
                )
        comparison = compare(expected.family(view.family), view, IPTABLES)
        findings += comparison.findings
        ports += comparison.ports
        endpoints += comparison.endpoints
        families.append(view.family)
    if not families:
        return Analysis(
            RulesState.NOT_FOUND,
            f"no kube-proxy chains (nat KUBE-SERVICES) in the {source} output",
            lines=lines,
            unknown=unknown,
            notes=tuple(notes),
        )
    notes += _missing_families(expected, families)
    return Analysis(
        RulesState.COMPARED,
        f"iptables mode: {ports} Service ports and {endpoints} endpoints compared",
        tuple(findings),
        tuple(families),
        ports,
        endpoints,
        lines,
        unknown,
        tuple(notes),
    )


def analyse_nft(
    expected: ExpectedState, texts: Iterable[str], *, check_node: bool = False, source: str = "nft -j"
) -> Analysis:
    """``texts``: ``nft -j list table …`` outputs (one per family, or one holding both tables)."""
    merged = NftRuleset()
    for text in texts:
        ruleset = parse_nft_json(text)
        if ruleset.error is not None:
            return Analysis(
                RulesState.UNREADABLE,
                f"{source} output: {ruleset.error}",
                lines=merged.objects,
                failure="invalid_output",
            )
        merged.tables.update(ruleset.tables)
        merged.objects += ruleset.objects
        merged.unknown_objects += ruleset.unknown_objects
        merged.examples += ruleset.examples
    findings: list[Finding] = []
    families: list[str] = []
    ports = endpoints = 0
    for family in ("ip", "ip6"):
        view = NftView.build(merged, family)
        if view is None:
            continue
        if check_node:
            foreign = other_node(expected, view, NFTABLES)
            if foreign:
                return Analysis(RulesState.OTHER_NODE, f"these rules are not node {expected.node}'s: {foreign}")
        comparison = compare(expected.family(view.family), view, NFTABLES)
        findings += comparison.findings
        ports += comparison.ports
        endpoints += comparison.endpoints
        families.append(view.family)
    if not families:
        return Analysis(
            RulesState.NOT_FOUND,
            f"no kube-proxy table (ip/ip6 kube-proxy) in the {source} output",
            lines=merged.objects,
        )
    notes = _missing_families(expected, families)
    return Analysis(
        RulesState.COMPARED,
        f"nftables mode: {ports} Service ports and {endpoints} endpoints compared",
        tuple(findings),
        tuple(families),
        ports,
        endpoints,
        merged.objects,
        merged.unknown_objects,
        tuple(notes),
    )
