"""Render the published results as Prometheus families. No I/O, no awaiting: only the latest publication.

``lbdoctor_check_status`` has one series per status per object (never vanishing while the object
exists); per-target families vanish with their target at the next scrape.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from exporter.lb.targets import ProbeTarget, TargetStatus
from exporter.lb.thresholds import LbState
from exporter.metrics import names
from exporter.metrics.exposition import header, join_labels, number
from exporter.model.results import ResultSet, Status

_STATUSES = tuple(Status)


def render_checks(results: ResultSet) -> Iterable[str]:
    """
    lbdoctor_check_status{check="health_probe",namespace="shop",kind="Service",name="web",status="fail"} 1
    lbdoctor_check_failure_reason{check="health_probe",namespace="shop",kind="Service",name="web",reason="Timeout"} 1
    """
    # A node with thousands of targets has two results per pod, so this loop runs ~10^4 times a
    # scrape: statuses are compared by a precomputed rank instead of the enum's severity property.
    worst: dict[tuple[str, str, str, str], Status] = {}
    reasons: dict[tuple[str, str, str, str], set[str]] = {}
    rank = _RANK
    ok = Status.OK
    for result in results.results:
        ref = result.object
        key: tuple[str, str, str, str] = (result.check, ref.namespace, ref.kind, ref.name)
        status = result.status
        current = worst.get(key)
        if current is None or rank[status] > rank[current]:
            worst[key] = status
        if status is not ok and result.reason is not None:
            reasons.setdefault(key, set()).add(result.reason)
    status_lines: list[str] = [header(names.CHECK_STATUS)]
    reason_lines: list[str] = [header(names.CHECK_FAILURE_REASON)]
    head, reason_name = names.CHECK_STATUS.name + "{", names.CHECK_FAILURE_REASON.name
    for key in sorted(worst):
        base = _check_labels(key)
        # The object's four status series in one string, from the precomputed endings for its status.
        s0, s1, s2, s3 = _STATUS_ENDINGS[worst[key]]
        status_lines.append(f"{head}{base}{s0}{head}{base}{s1}{head}{base}{s2}{head}{base}{s3}")
        for reason in sorted(reasons.get(key, ())):
            reason_lines.append(f'{reason_name}{{{base},reason="{reason}"}} 1\n')
    yield "".join(status_lines)
    yield "".join(reason_lines)


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
        # id(target) -> (target, label text). Holding the target keeps its id from being reused, and
        # the identity check makes a replaced target miss. Targets outlive many scrapes, and building
        # their label tuple costs more than the lookup.
        self._labels: dict[int, tuple[ProbeTarget, str, str]] = {}

    def _label_text(self, target: ProbeTarget) -> tuple[ProbeTarget, str, str]:
        """(target, its label text, its interval as a sample value)."""
        found = self._labels.get(id(target))
        if found is not None and found[0] is target:
            return found
        found = (target, join_labels(names.PROBE_LABELS, target.labels), number(target.interval))
        self._labels[id(target)] = found
        return found

    def render(self, statuses: Sequence[TargetStatus]) -> Iterable[str]:
        if len(self._labels) > 2 * len(statuses) + 64:
            self._labels.clear()  # forget targets that went away
        # Each family is a list of finished lines, appended in one pass over the targets: at 5,000
        # targets this loop writes ~50,000 lines a scrape, so it avoids per-sample method calls.
        success: list[str] = []
        duration: list[str] = []
        phases: list[str] = []
        code: list[str] = []
        reason: list[str] = []
        predicted: list[str] = []
        transitions: list[str] = []
        last: list[str] = []
        interval: list[str] = []
        n_success, n_duration, n_phases = (
            names.PROBE_SUCCESS.name,
            names.PROBE_DURATION.name,
            names.PROBE_PHASE_DURATION.name,
        )
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
        for status in statuses:
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
            if not outcome.success and outcome.reason is not None:
                reason.append(f'{n_reason}{{{labels},reason="{outcome.reason}"}} 1\n')
            last.append(f"{n_last}{{{labels}}} {number(status.probed_at)}\n")
        families = (
            (names.PROBE_SUCCESS, success),
            (names.PROBE_DURATION, duration),
            (names.PROBE_PHASE_DURATION, phases),
            (names.PROBE_HTTP_STATUS, code),
            (names.PROBE_FAILURE_REASON, reason),
            (names.PROBE_PREDICTED_HEALTHY, predicted),
            (names.PROBE_TRANSITIONS, transitions),
            (names.PROBE_LAST_TIMESTAMP, last),
            (names.PROBE_INTERVAL, interval),
        )
        for metric, lines in families:
            yield header(metric)
            yield "".join(lines)
