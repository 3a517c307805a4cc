"""Render the published results as Prometheus families. No I/O, no awaiting: only the latest publication.

Series grow with load balancers and failures, not with pods: ``lbdoctor_check_status`` has one series per
load balancer (owner) and check, from the rollup the role keeps (exporter/model/rollup.py); objects that do
not pass get series of their own (``lbdoctor_check_failure_reason``, ``_root_cause``, ``_caused_by``, and a
node's per-Service kube-proxy counts), at most ``max_object_series`` of them, the worst first, with
``lbdoctor_check_objects_omitted`` counting the objects left out. Per-target families vanish with their
target at the next scrape.

Rendering is written as *steps*: generators that do a slice of the work, yield, and leave the text
in a list the caller passes. ``render_checks`` and ``ProbeRenderer.render`` run the steps to the
end; the web server runs them on the event loop and lets probes run between slices (see
``exporter.web.server``), so a scrape of thousands of targets never holds the loop for more than a
fraction of a millisecond at a time.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from exporter.checks.registry import Role, position, runs_in
from exporter.dataplane.report import DataplaneReport, RulesState
from exporter.lb.targets import ProbeTarget, TargetStatus
from exporter.lb.thresholds import LbState
from exporter.metrics import names
from exporter.metrics.exposition import FamilyWriter, header, join_labels, number
from exporter.model.results import Check, ResultKey, ResultSet, Status
from exporter.model.rollup import contribution

# Work between two yields: a quarter of a millisecond or so of rendering (~7 µs a target with its
# eleven series, ~1 µs a check result). Each slice costs one more pass through the event loop;
# larger slices delay due probes by more (measured with bench/scrape.py's harness: 250 targets a
# slice added ~4 ms to the mean probe lag under continuous scraping, 32 about 1 ms).
TARGETS_PER_STEP = 32
RESULTS_PER_STEP = 256

# Most series of objects that do not pass, per scrape (setting ``metrics_max_object_series``).
MAX_OBJECT_SERIES = 5000

ObjectKey = tuple[str, str, str, str]  # check, namespace, kind, name
# A caused_by series past the effect's own labels: reason, then the cause's check, namespace, kind, name, reason.
CauseLabels = tuple[str, str, str, str, str, str]

_RANK = {status: status.severity for status in Status}
_KUBE_PROXY_SERVICE_SERIES = 2  # a Service's lbdoctor_kube_proxy_rules_missing and _stale on a node agent


@dataclass(slots=True)
class _NotPassing:
    """What one object that does not pass a check has: its worst status, and the lines of its series."""

    severity: int = 0
    root: bool = False
    reasons: set[str] = field(default_factory=set)  # lbdoctor_check_failure_reason
    roots: set[str] = field(default_factory=set)  # lbdoctor_check_root_cause
    causes: set[CauseLabels] = field(default_factory=set)  # lbdoctor_check_caused_by

    def series(self, key: ObjectKey, kube_proxy_services: bool) -> int:
        extra = _KUBE_PROXY_SERVICE_SERIES if kube_proxy_services and _kube_proxy_service(key) else 0
        return len(self.reasons) + len(self.roots) + len(self.causes) + extra


def _kube_proxy_service(key: ObjectKey) -> bool:
    return key[0] == "kube_proxy" and key[2] == "Service"


@dataclass(frozen=True)
class Selection:
    """The objects that do not pass whose series this scrape writes, within the budget, and what was left out.

    Objects are taken worst first: failing before warning before unknown, root causes before their effects,
    then in runbook order and by name, so the same round always shows the same objects."""

    checks: tuple[Check, ...]  # the checks the role renders status rows and per-object series for
    shown: Mapping[ObjectKey, _NotPassing]
    omitted: Mapping[str, int]  # check → objects left out

    @property
    def kube_proxy_services(self) -> frozenset[tuple[str, str]]:
        """(namespace, name) of the Services whose kube-proxy counts a node agent writes."""
        return frozenset((key[1], key[3]) for key in self.shown if _kube_proxy_service(key))


def select(
    results: ResultSet, role: Role | None = None, budget: int = MAX_OBJECT_SERIES, *, kube_proxy: bool = False
) -> Selection:
    """Which objects that do not pass get series of their own. ``kube_proxy``: a node agent whose kube-proxy
    rules were compared also writes two counts per such Service (``lbdoctor_kube_proxy_rules_*``)."""
    found: list[Selection] = []
    for _ in select_steps(results, found, role, budget, kube_proxy=kube_proxy):
        pass
    return found[0]


def select_steps(
    results: ResultSet,
    out: list[Selection],
    role: Role | None = None,
    budget: int = MAX_OBJECT_SERIES,
    *,
    kube_proxy: bool = False,
) -> Iterator[None]:
    """``select`` in slices (a round holds a result per pod: 100,000 of them in a big cluster's cluster role);
    appends the selection to ``out``."""
    mine = tuple(check for check in Check if role is None or runs_in(check, role))
    ok, bad = Status.OK, (Status.FAIL, Status.WARN)
    rank = _RANK
    objects: dict[ObjectKey, _NotPassing] = {}
    by_key: dict[ResultKey, tuple[str, str, str, str, str]] = {}
    effects = []
    items = results.results
    for start in range(0, len(items), RESULTS_PER_STEP * 16):  # passing results cost one comparison each
        for result in items[start : start + RESULTS_PER_STEP * 16]:
            status = result.status
            if status is ok or result.reason is None:
                continue
            ref = result.object
            if status in bad:
                by_key.setdefault(result.key, (result.check, ref.namespace, ref.kind, ref.name, result.reason))
                if result.caused_by is not None:
                    effects.append(result)
            key: ObjectKey = (result.check, ref.namespace, ref.kind, ref.name)
            found = objects.get(key)
            if found is None:
                found = objects[key] = _NotPassing()
            found.severity = max(found.severity, rank[status])
            found.reasons.add(result.reason)
            if status in bad and result.caused_by is None:
                found.roots.add(result.reason)
                found.root = True
        yield
    for result in effects:  # the cluster role's effects include the node agents' findings it imported
        assert result.caused_by is not None
        assert result.reason is not None
        cause = by_key.get(result.caused_by)
        if cause is None:
            continue
        ref = result.object
        key = (result.check, ref.namespace, ref.kind, ref.name)
        found = objects.get(key)
        if found is None:
            found = objects[key] = _NotPassing(severity=rank[result.status])
        found.causes.add((result.reason, *cause))
    yield
    order = sorted(objects.items(), key=lambda kv: (-kv[1].severity, not kv[1].root, position(Check(kv[0][0])), kv[0]))
    shown: dict[ObjectKey, _NotPassing] = {}
    omitted: Counter[str] = Counter({check.value: 0 for check in mine})
    left = budget
    for key, found in order:
        cost = found.series(key, kube_proxy)
        if cost <= left:
            shown[key] = found
            left -= cost
        else:
            omitted[key[0]] += 1
    out.append(Selection(mine, shown, omitted))


def render_checks(results: ResultSet, role: Role | None = None, budget: int = MAX_OBJECT_SERIES) -> Iterable[str]:
    """
    lbdoctor_check_status{check="health_probe",namespace="shop",kind="Ingress",name="web",status="fail"} 1
    lbdoctor_check_failure_reason{check="health_probe",namespace="shop",kind="Ingress",name="web",reason="Timeout"} 1
    """
    parts: list[str] = []
    for _ in check_steps(results, parts, select(results, role, budget)):
        pass
    return parts


def check_steps(results: ResultSet, out: list[str], selection: Selection) -> Iterator[None]:
    """``render_checks`` in slices: yields between slices, appends the families to ``out``.

    Status rows exist only for the checks the role runs (``selection.checks``): the cluster role's report also
    holds the node agents' findings (their failing probes, their kube-proxy rules), of which it sees only the
    failing ones. Those show in the failure-reason and causal families, beside the agents' own series."""
    rows = results.rollup if results.rollup is not None else contribution(results.results)
    wanted = frozenset(selection.checks)
    keys = sorted(
        (row for row in rows if row[0] in wanted), key=lambda row: (row[0], row[1].namespace, row[1].kind, row[1].name)
    )
    yield
    head = names.CHECK_STATUS.name + "{"
    chunks: list[str] = [header(names.CHECK_STATUS)]
    for start in range(0, len(keys), RESULTS_PER_STEP):
        chunk = []
        for row in keys[start : start + RESULTS_PER_STEP]:
            check, ref = row
            chunk.append(f"{head}{_check_labels((check, ref.namespace, ref.kind, ref.name))}{_ENDINGS[rows[row]]}")
        chunks.append("".join(chunk))
        yield
    out.extend(chunks)
    shown = sorted(selection.shown.items())
    reason_name, root_name = names.CHECK_FAILURE_REASON.name, names.CHECK_ROOT_CAUSE.name
    reasons: list[str] = [header(names.CHECK_FAILURE_REASON)]
    roots: list[str] = [header(names.CHECK_ROOT_CAUSE)]
    caused: list[str] = [header(names.CHECK_CAUSED_BY)]
    for start in range(0, len(shown), RESULTS_PER_STEP):
        for key, found in shown[start : start + RESULTS_PER_STEP]:
            base = _check_labels(key)
            reasons += [f'{reason_name}{{{base},reason="{reason}"}} 1\n' for reason in sorted(found.reasons)]
            roots += [f'{root_name}{{{base},reason="{reason}"}} 1\n' for reason in sorted(found.roots)]
            caused += [
                f"{names.CHECK_CAUSED_BY.name}{{{base},{join_labels(_CAUSE_LABELS, labels)}}} 1\n"
                for labels in sorted(found.causes)
            ]
        yield
    out.append("".join(reasons))
    out.append("".join(roots))
    out.append("".join(caused))
    omitted = FamilyWriter(names.CHECK_OBJECTS_OMITTED)
    for check in selection.checks:
        omitted.add(join_labels(("check",), (check.value,)), selection.omitted.get(check.value, 0))
    out.extend(omitted.render())


_CAUSE_LABELS = ("reason", *names.CAUSE_LABELS)
_ENDINGS = {status: f',status="{status}"}} 1\n' for status in Status}


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


def render_kube_proxy(
    node: str | None,
    report: DataplaneReport | None,
    results: ResultSet,
    services: Collection[tuple[str, str]] | None = None,
) -> Iterable[str]:
    """
    lbdoctor_kube_proxy_rules_missing{node="ip-10-0-1-23.ec2.internal",namespace="shop",service="web"} 2
    lbdoctor_kube_proxy_rules_stale{node="ip-10-0-1-23.ec2.internal",namespace="shop",service="web"} 1
    lbdoctor_kube_proxy_sync_lag_seconds{node="ip-10-0-1-23.ec2.internal"} 0
    lbdoctor_kube_proxy_healthy{node="ip-10-0-1-23.ec2.internal"} 1

    Per-Service series exist while the rules were compared, for the Services with rule problems past the grace
    period (both families, so ``missing + stale`` matches), judged at the moment the results were produced;
    ``services`` (namespace, name) narrows them to those the scrape's budget shows (``select``). A family with
    no sample (a node without kube-proxy, or whose rules all match) is left out entirely.
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
            for tracked in report.due(report.at or results.produced_at):  # as the kube_proxy check judges it
                finding = tracked.finding
                counts[finding.problem.missing][(finding.spn.namespace, finding.spn.name)] += 1
            found = set(counts[True]) | set(counts[False])
            for namespace, service in sorted(found if services is None else found & set(services)):
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
    node: str | None, report: DataplaneReport | None, results: ResultSet, out: list[str], selection: Selection
) -> Iterator[None]:
    """``render_kube_proxy`` for the sliced exposition: appends to ``out``, yields every few hundred lines."""
    for index, line in enumerate(render_kube_proxy(node, report, results, selection.kube_proxy_services), 1):
        out.append(line)
        if index % RESULTS_PER_STEP == 0:
            yield
