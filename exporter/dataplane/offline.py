"""Offline analysis: one node's saved rules against the cluster, for support cases where lbdoctor is not
installed yet (``lbdoctor diagnose --node NAME --iptables-save-file FILE``). Pure.

A saved dump has no history, so there is no grace period: every difference is reported, and the
caller should capture the dump and the cluster state close together. Dumps are checked to belong to
the node named (AWS VPC CNI SNAT address, where local endpoints live) before anything is compared.
"""

from __future__ import annotations

import time

from exporter.checks import kube_proxy
from exporter.dataplane.analysis import Analysis, analyse_iptables, analyse_nft
from exporter.dataplane.expected import expected_state
from exporter.dataplane.report import DataplaneReport, RulesReport, RulesState, TrackedFinding
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import build_plan
from exporter.model.results import CheckResult
from exporter.model.snapshot import ClusterSnapshot


def analyse(
    snapshot: ClusterSnapshot,
    node_name: str,
    *,
    iptables_save: str | None = None,
    nft_json: str | None = None,
    now: float | None = None,
    controller: ControllerConfig | None = None,
) -> tuple[CheckResult, ...]:
    """``kube_proxy`` results for ``node_name`` from a saved ``iptables-save`` and/or ``nft -j`` output.

    ``snapshot`` should hold the Services, EndpointSlices and (for the node's address and zone) the
    Node. Results: one for the node (compared, or why not: truncated, another node's, IPVS, no
    kube-proxy rules), one per Service port or endpoint that differs, and ``ok`` for load-balanced
    Services whose rules match.
    """
    moment = time.time() if now is None else now
    report = dataplane_report(snapshot, node_name, iptables_save=iptables_save, nft_json=nft_json, now=moment)
    plan = build_plan(snapshot, controller or ControllerConfig())
    return tuple(kube_proxy.verdicts(node_name, report, snapshot, kube_proxy.load_balanced(plan), moment))


def dataplane_report(
    snapshot: ClusterSnapshot,
    node_name: str,
    *,
    iptables_save: str | None = None,
    nft_json: str | None = None,
    now: float | None = None,
) -> DataplaneReport:
    """The saved rules compared, as the node agent's dataplane monitor would report them (no grace period,
    no kube-proxy health)."""
    if iptables_save is None and nft_json is None:
        raise ValueError("give the saved rules: iptables_save and/or nft_json")
    moment = time.time() if now is None else now
    expected = expected_state(snapshot, node_name)
    analyses: list[tuple[str, Analysis]] = []
    if iptables_save is not None:
        analyses.append(
            ("iptables", analyse_iptables(expected, {None: iptables_save}, check_node=True, source="the saved dump"))
        )
    if nft_json is not None:
        analyses.append(("nftables", analyse_nft(expected, [nft_json], check_node=True, source="the saved nft JSON")))
    mode, analysis = _combine(analyses)
    rules = RulesReport(
        state=analysis.state,
        detail=analysis.detail,
        mode=mode,
        families=analysis.families,
        findings=tuple(TrackedFinding(f, moment) for f in analysis.findings),
        ports=analysis.ports,
        endpoints=analysis.endpoints,
        lines=analysis.lines,
        unknown=analysis.unknown,
        read_at=moment,
        notes=analysis.notes,
        failure=analysis.failure,
    )
    return DataplaneReport(rules, health=None, grace=0.0)


def _combine(analyses: list[tuple[str, Analysis]]) -> tuple[str | None, Analysis]:
    """One dump: its analysis. Both: the compared one(s), findings of both."""
    if len(analyses) == 1:
        mode, analysis = analyses[0]
        return (mode if analysis.state is RulesState.COMPARED else None), analysis
    compared = [(m, a) for m, a in analyses if a.state is RulesState.COMPARED]
    if not compared:
        return None, analyses[0][1]
    if len(compared) == 1:
        return compared[0]
    first, second = compared[0][1], compared[1][1]
    return "iptables+nftables", Analysis(
        RulesState.COMPARED,
        f"{first.detail}; {second.detail}",
        first.findings + second.findings,
        tuple(dict.fromkeys(first.families + second.families)),
        first.ports + second.ports,
        first.endpoints + second.endpoints,
        first.lines + second.lines,
        first.unknown + second.unknown,
        first.notes + second.notes,
    )
