"""Results kept per unit of work, so a change re-evaluates the units it reaches and a publication costs them.

A unit is a load-balanced Service, an owner of target groups, the controller, a node's kube-proxy rules: each
role's evaluator decides which units a change reaches (exporter/roles/cluster_evaluator.py,
exporter/roles/node_evaluator.py) and hands each unit's results here with the owners they roll up to. Kept
apart per unit: the failing and warning results (what the causal rules read each round) and the status per
check and load balancer (``lbdoctor_check_status``). A unit whose checks raise keeps its last results.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping

import structlog

from exporter.kube import resources
from exporter.kube.store import Changes
from exporter.lb.backends import ROUTE_OWNER_KINDS
from exporter.model.results import CheckResult, ObjectRef, Status
from exporter.model.rollup import Rollup, Rows, contribution
from exporter.telemetry import ErrorSink

log = structlog.get_logger("lbdoctor.checks")


# Front-end objects that can change any owner's plan (a Gateway, its class, a configuration): a full round.
GLOBAL_FRONT_ENDS = frozenset(r.name for r in resources.FRONT_ENDS if r not in resources.ROUTES)
ROUTE_STORES = {r.name: kind for r, kind in zip(resources.ROUTES, ROUTE_OWNER_KINDS, strict=True)}


def route_changes(changes: Mapping[str, Changes]) -> list[ObjectRef]:
    """The Gateway API routes a set of store changes touched (each re-plans itself)."""
    return [
        ObjectRef(kind, *key.split("/", 1))
        for store, kind in ROUTE_STORES.items()
        if (found := changes.get(store)) is not None
        for key in found.items
    ]


class Units:
    def __init__(self, errors: ErrorSink | None = None) -> None:
        self._errors = errors
        self._results: dict[Hashable, tuple[CheckResult, ...]] = {}
        self._previous: dict[Hashable, tuple[CheckResult, ...]] = {}  # a full rebuild's fallback
        self._failing: dict[Hashable, tuple[tuple[CheckResult, ...], tuple[CheckResult, ...]]] = {}  # (bad, rest)
        self._rollup = Rollup()
        self.version = 0  # grows whenever a unit's results change

    def __len__(self) -> int:
        return len(self._results)

    def __contains__(self, key: object) -> bool:
        return key in self._results

    def get(self, key: Hashable) -> tuple[CheckResult, ...]:
        return self._results.get(key, ())

    def keys(self) -> Iterable[Hashable]:
        return self._results.keys()

    def start_over(self) -> None:
        """Before re-evaluating every unit: the old results stay only as the fallback of a unit that raises."""
        self._previous, self._results = self._results, {}
        self._failing = {}
        self._rollup.clear()
        self.version += 1

    def done(self) -> None:
        self._previous = {}

    def run(
        self,
        key: Hashable,
        evaluate: Callable[[], Iterable[CheckResult]],
        owners: Collection[ObjectRef] = (),
        describe: str = "",
    ) -> None:
        """Evaluate one unit; its results roll up to ``owners`` (none: each result is its own object's row).
        A unit whose checks raise is counted and keeps its last results."""
        try:
            self.set(key, list(evaluate()), owners)
        except Exception:
            if self._errors is not None:
                self._errors.error("checks", "internal")  # before the log: formatting a traceback takes a while
            log.exception("a check failed; its unit keeps its last results", unit=describe or str(key))
            kept = self._results.get(key, self._previous.get(key))
            if kept is not None:
                self.set(key, list(kept), owners)

    def set(self, key: Hashable, results: list[CheckResult], owners: Collection[ObjectRef] = ()) -> None:
        self._results[key] = tuple(results)
        self._rollup.set(key, contribution(results, owners))
        bad: list[CheckResult] = []
        rest: list[CheckResult] = []
        for result in results:
            (bad if result.status is Status.FAIL or result.status is Status.WARN else rest).append(result)
        if bad:
            self._failing[key] = (tuple(bad), tuple(rest))
        else:
            self._failing.pop(key, None)
        self.version += 1

    def drop(self, key: Hashable) -> None:
        if self._results.pop(key, None) is not None:
            self.version += 1
        self._failing.pop(key, None)
        self._rollup.drop(key)

    def results(self) -> tuple[CheckResult, ...]:
        return tuple(itertools.chain.from_iterable(self._results.values()))

    def split(self) -> tuple[tuple[CheckResult, ...], tuple[CheckResult, ...]]:
        """(every result that is neither failing nor warning, the failing and warning ones)."""
        failing = tuple(itertools.chain.from_iterable(r for r, _ in self._failing.values()))
        units = (self._failing[key][1] if key in self._failing else found for key, found in self._results.items())
        return tuple(itertools.chain.from_iterable(units)), failing

    def rollup(self) -> Rows:
        """The worst status of each check per owner of target groups (and per object outside any owner)."""
        return self._rollup.rows()
