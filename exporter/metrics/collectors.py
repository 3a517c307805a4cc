"""Render the published results as Prometheus families. No I/O, no awaiting: only the latest publication.

``lbdoctor_check_status`` has one series per status per object (never vanishing while the object
exists); per-target families vanish with their target at the next scrape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from exporter.dataplane.report import DataplaneReport, RulesState
from exporter.lb.targets import TargetStatus
from exporter.lb.thresholds import LbState
from exporter.metrics import names
from exporter.metrics.exposition import FamilyWriter, join_labels
from exporter.model.results import Check, CheckResult, ResultSet, Status

_STATUSES = tuple(Status)


def render_checks(results: ResultSet) -> Iterable[str]:
    """
    lbdoctor_check_status{check="health_probe",namespace="shop",kind="Service",name="web",status="fail"} 1
    lbdoctor_check_failure_reason{check="health_probe",namespace="shop",kind="Service",name="web",reason="Timeout"} 1
    """
    worst: dict[tuple[str, str, str, str], Status] = {}
    reasons: dict[tuple[str, str, str, str], set[str]] = {}
    for result in results.results:
        key = _check_key(result)
        current = worst.get(key)
        if current is None or result.status.severity > current.severity:
            worst[key] = result.status
        if result.status is not Status.OK and result.reason is not None:
            reasons.setdefault(key, set()).add(result.reason.value)
    status_family = FamilyWriter(names.CHECK_STATUS)
    reason_family = FamilyWriter(names.CHECK_FAILURE_REASON)
    for key in sorted(worst):
        base = join_labels(names.CHECK_LABELS, key)
        for status in _STATUSES:
            status_family.add(f'{base},status="{status.value}"', 1 if worst[key] is status else 0)
        for reason in sorted(reasons.get(key, ())):
            reason_family.add(f'{base},reason="{reason}"', 1)
    yield from status_family.render()
    yield from reason_family.render()


def _check_key(result: CheckResult) -> tuple[str, str, str, str]:
    ref = result.object
    return (result.check.value, ref.namespace, ref.kind, ref.name)


class ProbeRenderer:
    """Keeps the escaped label string of each target so a scrape only formats numbers."""

    def __init__(self) -> None:
        self._labels: dict[tuple[str, ...], str] = {}

    def _label_text(self, key: Sequence[str]) -> str:
        found = self._labels.get(tuple(key))
        if found is None:
            found = join_labels(names.PROBE_LABELS, key)
            self._labels[tuple(key)] = found
        return found

    def render(self, statuses: Sequence[TargetStatus]) -> Iterable[str]:
        if len(self._labels) > 2 * len(statuses) + 64:
            self._labels.clear()  # forget targets that went away
        success = FamilyWriter(names.PROBE_SUCCESS)
        duration = FamilyWriter(names.PROBE_DURATION)
        phases = FamilyWriter(names.PROBE_PHASE_DURATION)
        code = FamilyWriter(names.PROBE_HTTP_STATUS)
        reason = FamilyWriter(names.PROBE_FAILURE_REASON)
        predicted = FamilyWriter(names.PROBE_PREDICTED_HEALTHY)
        transitions = FamilyWriter(names.PROBE_TRANSITIONS)
        last = FamilyWriter(names.PROBE_LAST_TIMESTAMP)
        interval = FamilyWriter(names.PROBE_INTERVAL)
        for status in statuses:
            labels = self._label_text(status.target.labels)
            interval.add(labels, status.target.interval)
            transitions.add(labels, status.health.transitions)
            if status.health.state is not LbState.INITIAL:
                predicted.add(labels, 1 if status.health.state is LbState.HEALTHY else 0)
            outcome = status.outcome
            if outcome is None or status.probed_at is None:
                continue
            success.add(labels, 1 if outcome.success else 0)
            duration.add(labels, outcome.duration)
            for phase, seconds in outcome.phases:
                phases.add(f'{labels},phase="{phase}"', seconds)
            code.add(labels, outcome.status_code or 0)
            if not outcome.success and outcome.reason is not None:
                reason.add(f'{labels},reason="{outcome.reason.value}"', 1)
            last.add(labels, status.probed_at)
        for family in (success, duration, phases, code, reason, predicted, transitions, last, interval):
            yield from family.render()


def render_kube_proxy(node: str | None, report: DataplaneReport | None, results: ResultSet) -> Iterable[str]:
    """
    lbdoctor_kube_proxy_rules_missing{node="ip-10-0-1-23.ec2.internal",namespace="shop",service="web"} 2
    lbdoctor_kube_proxy_rules_stale{node="ip-10-0-1-23.ec2.internal",namespace="shop",service="web"} 1
    lbdoctor_kube_proxy_sync_lag_seconds{node="ip-10-0-1-23.ec2.internal"} 0
    lbdoctor_kube_proxy_healthy{node="ip-10-0-1-23.ec2.internal"} 1

    Per-Service series exist while the rules were compared, for every Service with a kube_proxy verdict
    (load-balanced ones, and any other with problems); the counts are the findings past the grace period,
    judged at the moment the results were produced.
    """
    missing = FamilyWriter(names.KUBE_PROXY_RULES_MISSING)
    stale = FamilyWriter(names.KUBE_PROXY_RULES_STALE)
    lag = FamilyWriter(names.KUBE_PROXY_SYNC_LAG)
    healthy = FamilyWriter(names.KUBE_PROXY_HEALTHY)
    if node and report is not None and report.rules.state is not RulesState.DISABLED:
        node_label = join_labels(("node",), (node,))
        if report.rules.state is RulesState.COMPARED:
            counts: dict[bool, Counter[tuple[str, str]]] = {True: Counter(), False: Counter()}
            for tracked in report.due(results.produced_at):
                finding = tracked.finding
                counts[finding.problem.missing][(finding.spn.namespace, finding.spn.name)] += 1
            services = {
                (r.object.namespace, r.object.name)
                for r in results.results
                if r.check is Check.KUBE_PROXY and r.object.kind == "Service"
            }
            for namespace, service in sorted(services | set(counts[True]) | set(counts[False])):
                labels = join_labels(names.KUBE_PROXY_LABELS, (node, namespace, service))
                missing.add(labels, counts[True][(namespace, service)])
                stale.add(labels, counts[False][(namespace, service)])
        health = report.health
        if health is not None and health.sync_lag is not None:
            lag.add(node_label, health.sync_lag)
        if health is not None and health.healthz_url:
            if health.reachable:
                healthy.add(node_label, 1 if health.healthy else 0)
            elif report.rules.state in (RulesState.COMPARED, RulesState.UNSUPPORTED):
                healthy.add(node_label, 0)
    for family in (missing, stale, lag, healthy):
        yield from family.render()
