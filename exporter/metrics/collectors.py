"""Render the published results as Prometheus families. No I/O, no awaiting: only the latest publication.

``lbdoctor_check_status`` has one series per status per object (never vanishing while the object
exists); per-target families vanish with their target at the next scrape.

Rendering is written as *steps*: generators that do a slice of the work, yield, and leave the text
in a list the caller passes. ``render_checks`` and ``ProbeRenderer.render`` run the steps to the
end; the web server runs them on the event loop and lets probes run between slices (see
``exporter.web.server``), so a scrape of thousands of targets never holds the loop for more than a
fraction of a millisecond at a time.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

from exporter.checks.registry import Role, runs_in
from exporter.dataplane.report import DataplaneReport, RulesState
from exporter.lb.targets import ProbeTarget, TargetStatus
from exporter.lb.thresholds import LbState
from exporter.metrics import names
from exporter.metrics.exposition import FamilyWriter, header, join_labels, number
from exporter.model.results import Check, ResultKey, ResultSet, Status

# Work between two yields: a quarter of a millisecond or so of rendering (~7 µs a target with its
# eleven series, ~1 µs a check result). Each slice costs one more pass through the event loop;
# larger slices delay due probes by more (measured with bench/scrape.py's harness: 250 targets a
# slice added ~4 ms to the mean probe lag under continuous scraping, 32 about 1 ms).
TARGETS_PER_STEP = 32
RESULTS_PER_STEP = 256

_STATUSES = tuple(Status)


def render_checks(results: ResultSet, role: Role | None = None) -> Iterable[str]:
    """
    lbdoctor_check_status{check="health_probe",namespace="shop",kind="Service",name="web",status="fail"} 1
    lbdoctor_check_failure_reason{check="health_probe",namespace="shop",kind="Service",name="web",reason="Timeout"} 1
    """
    parts: list[str] = []
    for _ in check_steps(results, parts, role):
        pass
    return parts


def check_steps(results: ResultSet, out: list[str], role: Role | None = None) -> Iterator[None]:
    """``render_checks`` in slices: yields between slices, appends the families to ``out``.

    With a ``role``, only the checks it runs have status series: the cluster role's report also holds the
    node agents' findings that its own ones explain or follow from, which those agents publish themselves.
    Those still show in ``lbdoctor_check_caused_by``, where the cluster role's view of causes adds to theirs."""
    # A node with thousands of targets has two results per pod, so this loop runs ~10^4 times a
    # scrape: statuses are compared by a precomputed rank instead of the enum's severity property.
    worst: dict[tuple[str, str, str, str], Status] = {}
    reasons: dict[tuple[str, str, str, str], set[str]] = {}
    rank = _RANK
    ok = Status.OK
    items = results.results
    mine = None if role is None else {check for check in Check if runs_in(check, role)}
    roots: set[tuple[str, str, str, str, str]] = set()
    caused: set[tuple[str, ...]] = set()
    by_key: dict[ResultKey, tuple[str, str, str, str, str]] = {}
    bad = (Status.FAIL, Status.WARN)
    for start in range(0, len(items), RESULTS_PER_STEP):
        for result in items[start : start + RESULTS_PER_STEP]:
            ref = result.object
            if result.status in bad and result.reason is not None:
                by_key.setdefault(result.key, (result.check, ref.namespace, ref.kind, ref.name, result.reason))
            if mine is not None and result.check not in mine:
                continue
            key: tuple[str, str, str, str] = (result.check, ref.namespace, ref.kind, ref.name)
            status = result.status
            current = worst.get(key)
            if current is None or rank[status] > rank[current]:
                worst[key] = status
            if status is not ok and result.reason is not None:
                reasons.setdefault(key, set()).add(result.reason)
                if status in bad and result.caused_by is None:
                    roots.add((*key, result.reason))
        yield
    for result in items:
        if result.caused_by is not None and result.reason is not None and result.status in bad:
            cause = by_key.get(result.caused_by)
            if cause is not None:
                ref = result.object
                caused.add((result.check, ref.namespace, ref.kind, ref.name, result.reason, *cause))
    # Lines are joined slice by slice: one join of a whole family would be a single long pause.
    status_chunks: list[str] = [header(names.CHECK_STATUS)]
    reason_chunks: list[str] = [header(names.CHECK_FAILURE_REASON)]
    head, reason_name = names.CHECK_STATUS.name + "{", names.CHECK_FAILURE_REASON.name
    keys = sorted(worst)
    yield
    for start in range(0, len(keys), RESULTS_PER_STEP):
        status_lines: list[str] = []
        reason_lines: list[str] = []
        for key in keys[start : start + RESULTS_PER_STEP]:
            base = _check_labels(key)
            # The object's four status series in one string, from the precomputed endings for its status.
            s0, s1, s2, s3 = _STATUS_ENDINGS[worst[key]]
            status_lines.append(f"{head}{base}{s0}{head}{base}{s1}{head}{base}{s2}{head}{base}{s3}")
            for reason in sorted(reasons.get(key, ())):
                reason_lines.append(f'{reason_name}{{{base},reason="{reason}"}} 1\n')
        status_chunks.append("".join(status_lines))
        reason_chunks.append("".join(reason_lines))
        yield
    out.extend(status_chunks)
    out.extend(reason_chunks)
    root_lines = [header(names.CHECK_ROOT_CAUSE)]
    root_lines += [
        f"{names.CHECK_ROOT_CAUSE.name}{{{join_labels(names.CHECK_ROOT_CAUSE.labels, labels)}}} 1\n"
        for labels in sorted(roots)
    ]
    out.append("".join(root_lines))
    caused_lines = [header(names.CHECK_CAUSED_BY)]
    caused_lines += [
        f"{names.CHECK_CAUSED_BY.name}{{{join_labels(names.CHECK_CAUSED_BY.labels, labels)}}} 1\n"
        for labels in sorted(caused)
    ]
    out.append("".join(caused_lines))


_RANK = {status: status.severity for status in Status}


def _endings(current: Status) -> tuple[str, str, str, str]:
    """What follows an object's labels in its four status series when its status is ``current``."""
    first, second, third, fourth = (f',status="{status}"}} {1 if current is status else 0}\n' for status in _STATUSES)
    return first, second, third, fourth


_STATUS_ENDINGS = {current: _endings(current) for current in Status}


@functools.lru_cache(maxsize=1 << 16)
def _check_labels(key: tuple[str, str, str, str]) -> str:
    """The escaped label text of a check's object; cached, since the same objects come back every scrape."""
    return join_labels(names.CHECK_LABELS, key)


class ProbeRenderer:
    """Keeps the escaped label string of each target so a scrape only formats numbers."""

    def __init__(self) -> None:
        # id(target) -> (target, label text, interval text). Holding the target keeps its id from
        # being reused, and the identity check makes a replaced target miss. Targets outlive many
        # scrapes, and building their label tuple costs more than the lookup.
        self._labels: dict[int, tuple[ProbeTarget, str, str]] = {}

    def _label_text(self, target: ProbeTarget) -> tuple[ProbeTarget, str, str]:
        found = self._labels.get(id(target))
        if found is not None and found[0] is target:
            return found
        found = (target, join_labels(names.PROBE_LABELS, target.labels), number(target.interval))
        self._labels[id(target)] = found
        return found

    def render(self, statuses: Sequence[TargetStatus]) -> Iterable[str]:
        parts: list[str] = []
        for _ in self.steps(statuses, parts):
            pass
        return parts

    def steps(self, statuses: Sequence[TargetStatus], out: list[str]) -> Iterator[None]:
        """``render`` in slices of ``TARGETS_PER_STEP`` targets; appends the families to ``out``."""
        if len(self._labels) > 2 * len(statuses) + 64:
            self._labels.clear()  # forget targets that went away
        # Each family is a list of finished lines, appended in one pass over the targets: at 5,000
        # targets this loop writes ~50,000 lines a scrape, so it avoids per-sample method calls.
        # Each family's lines are joined slice by slice into chunks (one join of a whole family would
        # be a single long pause); the output is each family's header followed by its chunks.
        families = (
            names.PROBE_SUCCESS,
            names.PROBE_DURATION,
            names.PROBE_PHASE_DURATION,
            names.PROBE_HTTP_STATUS,
            names.PROBE_GRPC_STATUS,
            names.PROBE_FAILURE_REASON,
            names.PROBE_PREDICTED_HEALTHY,
            names.PROBE_TRANSITIONS,
            names.PROBE_LAST_TIMESTAMP,
            names.PROBE_INTERVAL,
        )
        chunks: list[list[str]] = [[header(metric)] for metric in families]
        n_success, n_duration, n_phases = (
            names.PROBE_SUCCESS.name,
            names.PROBE_DURATION.name,
            names.PROBE_PHASE_DURATION.name,
        )
        n_grpc = names.PROBE_GRPC_STATUS.name
        n_code, n_reason, n_predicted = (
            names.PROBE_HTTP_STATUS.name,
            names.PROBE_FAILURE_REASON.name,
            names.PROBE_PREDICTED_HEALTHY.name,
        )
        n_transitions, n_last, n_interval = (
            names.PROBE_TRANSITIONS.name,
            names.PROBE_LAST_TIMESTAMP.name,
            names.PROBE_INTERVAL.name,
        )
        label_text = self._label_text
        initial, healthy = LbState.INITIAL, LbState.HEALTHY
        for start in range(0, len(statuses), TARGETS_PER_STEP):
            success: list[str] = []
            duration: list[str] = []
            phases: list[str] = []
            code: list[str] = []
            grpc: list[str] = []
            reason: list[str] = []
            predicted: list[str] = []
            transitions: list[str] = []
            last: list[str] = []
            interval: list[str] = []
            for status in statuses[start : start + TARGETS_PER_STEP]:
                target = status.target
                _, labels, every = label_text(target)
                interval.append(f"{n_interval}{{{labels}}} {every}\n")
                health = status.health
                transitions.append(f"{n_transitions}{{{labels}}} {health.transitions:d}\n")
                if health.state is not initial:
                    predicted.append(f"{n_predicted}{{{labels}}} {1 if health.state is healthy else 0}\n")
                outcome = status.outcome
                if outcome is None or status.probed_at is None:
                    continue
                success.append(f"{n_success}{{{labels}}} {1 if outcome.success else 0}\n")
                duration.append(f"{n_duration}{{{labels}}} {number(outcome.duration)}\n")
                for phase, seconds in outcome.phases:
                    phases.append(f'{n_phases}{{{labels},phase="{phase}"}} {number(seconds)}\n')
                code.append(f"{n_code}{{{labels}}} {outcome.status_code or 0:d}\n")
                if outcome.grpc_status is not None:
                    grpc.append(f"{n_grpc}{{{labels}}} {outcome.grpc_status:d}\n")
                if not outcome.success and outcome.reason is not None:
                    reason.append(f'{n_reason}{{{labels},reason="{outcome.reason}"}} 1\n')
                last.append(f"{n_last}{{{labels}}} {number(status.probed_at)}\n")
            # Same order as ``families``.
            for family, lines in zip(
                chunks,
                (success, duration, phases, code, grpc, reason, predicted, transitions, last, interval),
                strict=True,
            ):
                if lines:
                    family.append("".join(lines))
            yield
        for family in chunks:
            out.extend(family)


def render_kube_proxy(node: str | None, report: DataplaneReport | None, results: ResultSet) -> Iterable[str]:
    """
    lbdoctor_kube_proxy_rules_missing{node="ip-10-0-1-23.ec2.internal",namespace="shop",service="web"} 2
    lbdoctor_kube_proxy_rules_stale{node="ip-10-0-1-23.ec2.internal",namespace="shop",service="web"} 1
    lbdoctor_kube_proxy_sync_lag_seconds{node="ip-10-0-1-23.ec2.internal"} 0
    lbdoctor_kube_proxy_healthy{node="ip-10-0-1-23.ec2.internal"} 1

    Per-Service series exist while the rules were compared, for every Service with a kube_proxy verdict
    (load-balanced ones, and any other with problems); the counts are the findings past the grace period,
    judged at the moment the results were produced. A family with no sample (a node without kube-proxy)
    is left out entirely.
    """
    missing = FamilyWriter(names.KUBE_PROXY_RULES_MISSING)
    stale = FamilyWriter(names.KUBE_PROXY_RULES_STALE)
    lag = FamilyWriter(names.KUBE_PROXY_SYNC_LAG)
    healthy = FamilyWriter(names.KUBE_PROXY_HEALTHY)
    filled: set[str] = set()
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
                filled |= {"missing", "stale"}
        health = report.health
        if health is not None and health.sync_lag is not None:
            lag.add(node_label, health.sync_lag)
            filled.add("lag")
        if health is not None and health.healthz_url:
            if health.reachable:
                healthy.add(node_label, 1 if health.healthy else 0)
                filled.add("healthy")
            elif report.rules.state in (RulesState.COMPARED, RulesState.UNSUPPORTED):
                healthy.add(node_label, 0)
                filled.add("healthy")
    for key, family in (("missing", missing), ("stale", stale), ("lag", lag), ("healthy", healthy)):
        if key in filled:
            yield from family.render()


def kube_proxy_steps(
    node: str | None, report: DataplaneReport | None, results: ResultSet, out: list[str]
) -> Iterator[None]:
    """``render_kube_proxy`` for the sliced exposition: appends to ``out``, yields every few hundred lines."""
    for index, line in enumerate(render_kube_proxy(node, report, results), 1):
        out.append(line)
        if index % RESULTS_PER_STEP == 0:
            yield
