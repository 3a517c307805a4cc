"""The status of each check per load balancer, so that a healthy pod costs no series.

A result belongs to the load balancers whose target groups depend on what it is about: a pod's result to
the owners (the Ingress, NLB Service or TargetGroupBinding) of the Services that select the pod, a
Service's to the owners routing to it, an owner's own result to itself. The roles evaluate in units (a
Service, an owner, the controller, a node's kube-proxy rules) and each unit knows which owners it serves,
so the unit, not the result, says where its results roll up. A unit that serves no owner (the controller,
the AWS checks' results, which are already on owners) gives each result a row of its own object.

``Rollup`` keeps, per row (check, owner), the worst status over every unit's results, updated unit by unit:
re-evaluating one Service costs that Service's rows, not a pass over the round. ``lbdoctor_check_status`` is
rendered from the rows; the objects that do not pass get series of their own (exporter/metrics/collectors.py).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping
from types import MappingProxyType

from exporter.model.results import Check, CheckResult, ObjectRef, Status

Row = tuple[Check, ObjectRef]
Rows = Mapping[Row, Status]

_ORDER = (Status.OK, Status.UNKNOWN, Status.WARN, Status.FAIL)  # by severity
_RANK = {status: status.severity for status in Status}
EMPTY: Rows = MappingProxyType({})


def contribution(results: Iterable[CheckResult], owners: Collection[ObjectRef] = ()) -> dict[Row, Status]:
    """The worst status per check that ``results`` give each of ``owners``; without owners, each result's
    own object is its row."""
    rows: dict[Row, Status] = {}
    rank = _RANK
    for result in results:
        status = result.status
        for owner in owners or (result.object,):
            key = (result.check, owner)
            current = rows.get(key)
            if current is None or rank[status] > rank[current]:
                rows[key] = status
    return rows


class Rollup:
    """Rows kept unit by unit: per row, how many units give it each status; the worst one with a count wins."""

    def __init__(self) -> None:
        self._units: dict[Hashable, dict[Row, Status]] = {}
        self._counts: dict[Row, list[int]] = {}
        self._worst: dict[Row, Status] = {}
        self._view: Rows | None = None

    def set(self, unit: Hashable, rows: dict[Row, Status]) -> None:
        old = self._units.get(unit)
        if old == rows:
            return
        if old is not None:
            self._apply(old, -1)
        if rows:
            self._units[unit] = rows
            self._apply(rows, 1)
        else:
            self._units.pop(unit, None)

    def drop(self, unit: Hashable) -> None:
        old = self._units.pop(unit, None)
        if old is not None:
            self._apply(old, -1)

    def clear(self) -> None:
        self._units, self._counts, self._worst, self._view = {}, {}, {}, None

    def _apply(self, rows: Mapping[Row, Status], sign: int) -> None:
        self._view = None
        counts, worst, rank = self._counts, self._worst, _RANK
        for row, status in rows.items():
            found = counts.get(row)
            if found is None:
                found = counts[row] = [0, 0, 0, 0]
            found[rank[status]] += sign
            for index in (3, 2, 1, 0):
                if found[index] > 0:
                    worst[row] = _ORDER[index]
                    break
            else:
                del counts[row]
                worst.pop(row, None)

    @property
    def units(self) -> int:
        return len(self._units)

    def rows(self) -> Rows:
        """The rows now, as a read-only copy a publication can keep (the same copy until a unit changes)."""
        if self._view is None:
            self._view = MappingProxyType(dict(self._worst))
        return self._view
