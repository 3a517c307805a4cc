"""Results as plain JSON-ready data: shared by the JSON API and ``lbdoctor diagnose --output json``."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from exporter.lb.successcodes import SuccessCodesError, parse_success_codes
from exporter.lb.targets import ProbeTarget, TargetStatus
from exporter.lb.thresholds import LbState, PredictedHealth
from exporter.model import subjects
from exporter.model.probe import ProbeOutcome, ProbeRequest, success_codes_text
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, ResultKey, Status, Subject, TargetRef


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def summary(results: Sequence[CheckResult]) -> dict[str, int]:
    counts = {status.value: 0 for status in Status}
    for result in results:
        counts[result.status.value] += 1
    return counts


def results_json(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    """``caused_by`` is the position of the cause in the same list (the first result with its key)."""
    index: dict[ResultKey, int] = {}
    for position, result in enumerate(results):
        index.setdefault(result.key, position)
    return [
        {
            "check": result.check.value,
            "status": result.status.value,
            "reason": result.reason.value if result.reason else None,
            "object": {"kind": result.object.kind, "namespace": result.object.namespace, "name": result.object.name},
            "target": (
                None
                if result.target is None
                else {"pod": result.target.pod, "ip": result.target.ip, "port": result.target.port}
            ),
            "message": result.message,
            "remedy": result.remedy,
            "caused_by": index.get(result.caused_by) if result.caused_by is not None else None,
            "node": result.node,
            "about": [subjects.text(subject) for subject in result.about],
        }
        for result in results
    ]


def results_from_json(
    rows: Any, *, statuses: frozenset[str] = frozenset({"fail", "warn"}), node: str | None = None
) -> tuple[CheckResult, ...]:
    """The inverse of ``results_json`` for the rows with one of ``statuses`` (the cluster role reads the node
    agents' failing and warning results, the only ones a causal rule can link). Rows that do not parse
    (an unknown check, a newer agent) are skipped; a ``caused_by`` that points at a skipped row is dropped."""
    if not isinstance(rows, list):
        return ()
    parsed: dict[int, CheckResult] = {}
    causes: dict[int, int] = {}
    for position, row in enumerate(rows):
        if not isinstance(row, dict) or row.get("status") not in statuses:
            continue
        try:
            result = _result_from_json(row)
        except (KeyError, TypeError, ValueError):
            continue
        if node is not None and result.node not in (None, node):
            continue  # an agent speaks for its own node only
        parsed[position] = result
        cause = row.get("caused_by")
        if isinstance(cause, int) and not isinstance(cause, bool):
            causes[position] = cause
    found = []
    for position, result in parsed.items():
        cause = parsed.get(causes.get(position, -1))
        found.append(replace(result, caused_by=cause.key) if cause is not None else result)
    return tuple(found)


_ABOUT_MAX = 64  # subjects one result may name


def _result_problem(row: dict[str, Any]) -> str | None:
    """Why a result row is not one this lbdoctor wrote, or None: every string and list bounded, so a forged
    answer costs no memory and names no impossible object."""
    ref = row.get("object")
    if not isinstance(ref, dict) or not _text(ref, "kind", 63) or not _text(ref, "namespace") or not _text(ref, "name"):
        return "object is not {kind, namespace, name}"
    for key in ("message", "remedy"):
        if row.get(key) is not None and not _text(row, key, 4 * _TEXT_MAX):
            return f"{key} is not text"
    if row.get("node") is not None and not _text(row, "node"):
        return "node is not a name"
    about = row.get("about")
    if about is not None and (
        not isinstance(about, list)
        or len(about) > _ABOUT_MAX
        or not all(isinstance(text, str) and len(text) <= _TEXT_MAX for text in about)
    ):
        return "about is not a short list of subjects"
    target = row.get("target")
    if target is not None and (
        not isinstance(target, dict)
        or (target.get("pod") is not None and not _text(target, "pod"))
        or (target.get("ip") is not None and not _text(target, "ip", 64))
        or (target.get("port") is not None and not _number(target, "port", 1, 65535, integer=True))
    ):
        return "target is malformed"
    return None


def _result_from_json(row: dict[str, Any]) -> CheckResult:
    problem = _result_problem(row)
    if problem is not None:
        raise ValueError(problem)
    ref = row["object"]
    target = row.get("target")
    reason = row.get("reason")
    about: list[Subject] = []
    for text in row.get("about") or ():
        subject = subjects.parse(text)
        if subject is not None:
            about.append(subject)
    node = row.get("node")
    return CheckResult(
        check=Check(row["check"]),
        status=Status(row["status"]),
        reason=None if reason is None else Reason(reason),
        object=ObjectRef(str(ref["kind"]), str(ref["namespace"]), str(ref["name"])),
        message=str(row.get("message") or ""),
        remedy=str(row.get("remedy") or ""),
        target=None
        if not isinstance(target, dict)
        else TargetRef(
            None if target.get("pod") is None else str(target["pod"]),
            None if target.get("ip") is None else str(target["ip"]),
            None if target.get("port") is None else int(target["port"]),
        ),
        node=None if node is None else str(node),
        about=tuple(about),
    )


def targets_json(statuses: Sequence[TargetStatus], *, compact: bool = False) -> list[dict[str, Any]]:
    """One row per target. ``compact``: without what changes at every probe (the streaks, the last probe's time
    and duration), as the node agents send their rows to the cluster role (``lbdoctor.probes/v1``): a row then
    changes only when the target's state does, so an unchanged node answers 304 Not Modified."""
    rows = []
    for status in statuses:
        target, outcome = status.target, status.outcome
        request = target.request
        row: dict[str, Any] = {
            "namespace": target.namespace,
            "service": target.service,
            "owner": {"kind": target.owner.kind, "name": target.owner.name},
            "owner_label": target.owner_label,
            "target_type": target.target_type,
            "pod": target.pod,
            "node": target.node,
            "lb": target.lb,
            "ip": request.ip,
            "port": request.port,
            "protocol": request.protocol,
            "protocol_version": request.protocol_version,
            "path": request.path if request.protocol != "TCP" else None,
            "success_codes": success_codes_text(request.success_ranges) if request.protocol != "TCP" else None,
            "interval_seconds": target.interval,
            "timeout_seconds": request.timeout,
            "healthy_threshold": target.healthy_threshold,
            "unhealthy_threshold": target.unhealthy_threshold,
            "predicted_state": status.health.state.value,
            "transitions": status.health.transitions,
        }
        last: dict[str, Any] | None = None
        if outcome is not None and (compact or status.probed_at is not None):
            last = {
                "success": outcome.success,
                "reason": outcome.reason.value if outcome.reason else None,
                "status_code": outcome.status_code,
                "grpc_status": outcome.grpc_status,
                "detail": outcome.detail,
            }
        if compact:
            del row["owner_label"]
        else:
            row["ok_streak"] = status.health.ok_streak
            row["fail_streak"] = status.health.fail_streak
            if last is not None and outcome is not None and status.probed_at is not None:
                last = {"at": iso(status.probed_at), **last, "duration_seconds": round(outcome.duration, 6)}
        row["last_probe"] = last
        rows.append(row)
    return rows


def targets_from_json(rows: Any) -> tuple[TargetStatus, ...]:
    """The inverse of ``targets_json``: a node agent's probe states as the cluster role reads them from
    its ``/api/v1/results``. Rows that do not parse are skipped (a newer or older agent, say)."""
    return parse_targets(rows).statuses


@dataclass(frozen=True)
class ParsedTargets:
    statuses: tuple[TargetStatus, ...]
    rejected: int = 0  # rows that are not a valid probe state
    foreign: int = 0  # rows about another node than the agent's own


_PROTOCOLS = frozenset({"HTTP", "HTTPS", "TCP", "GRPC"})
_LBS = frozenset({"alb", "nlb", "tgb"})
_PROTOCOL_VERSIONS = frozenset({"HTTP1", "HTTP2", "GRPC"})
_STATES = frozenset(state.value for state in LbState)
_NAME_MAX = 253  # a DNS subdomain: the longest Kubernetes object name
_TEXT_MAX = 1024  # paths, details


def _text(row: Any, key: str, limit: int = _NAME_MAX) -> bool:
    value = row.get(key)
    return isinstance(value, str) and len(value) <= limit


def _number(row: Any, key: str, low: float, high: float, *, integer: bool = False) -> bool:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    return low <= value <= high  # NaN compares false


def _row_problem(row: Any) -> str | None:
    """Why a row is not a probe state this lbdoctor wrote, or None. Bounds every string and number, so a
    forged or corrupt answer can neither cost memory in labels nor produce an impossible state."""
    if not isinstance(row, dict):
        return "not an object"
    for key in ("namespace", "service", "pod", "node"):
        if not _text(row, key):
            return f"{key} is not a name"
    owner = row.get("owner")
    if not isinstance(owner, dict) or not _text(owner, "kind", 63) or not _text(owner, "name"):
        return "owner is not {kind, name}"
    if row.get("lb") not in _LBS or row.get("protocol") not in _PROTOCOLS:
        return "unknown lb or protocol"
    if row.get("predicted_state") not in _STATES:
        return "unknown predicted_state"
    if row.get("protocol_version", "HTTP1") not in _PROTOCOL_VERSIONS:
        return "unknown protocol_version"
    try:
        ipaddress.ip_address(str(row.get("ip")))
    except ValueError:
        return "ip is not an address"
    if not (
        _number(row, "port", 1, 65535, integer=True)
        and _number(row, "interval_seconds", 0.001, 86400)
        and _number(row, "timeout_seconds", 0.001, 3600)
        and _number(row, "healthy_threshold", 1, 100, integer=True)
        and _number(row, "unhealthy_threshold", 1, 100, integer=True)
    ):
        return "a number is out of range"
    for key in ("ok_streak", "fail_streak", "transitions"):
        if key in row and not _number(row, key, 0, 2**53, integer=True):
            return f"{key} is out of range"
    if row.get("path") is not None and not _text(row, "path", _TEXT_MAX):
        return "path is not text"
    if row.get("success_codes") is not None and not _text(row, "success_codes", 64):
        return "success_codes is not text"
    if row.get("target_type") not in (None, "ip", "instance"):
        return "unknown target_type"
    last = row.get("last_probe")
    if last is not None:
        if not isinstance(last, dict) or not isinstance(last.get("success"), bool):
            return "last_probe is malformed"
        if "at" in last and not _text(last, "at", 64):  # a compact row has no time
            return "last_probe.at is not a time"
        if last.get("reason") is not None and not _text(last, "reason", 63):
            return "last_probe.reason is not a reason"
        code = last.get("status_code")
        if code is not None and not _number(last, "status_code", 100, 999, integer=True):
            return "last_probe.status_code is out of range"
        if last.get("grpc_status") is not None and not _number(last, "grpc_status", 0, 999, integer=True):
            return "last_probe.grpc_status is out of range"
        if last.get("detail") is not None and not _text(last, "detail", _TEXT_MAX):
            return "last_probe.detail is not text"
        if "duration_seconds" in last and not _number(last, "duration_seconds", 0, 3600):
            return "last_probe.duration_seconds is out of range"
    return None


def parse_targets(rows: Any, *, node: str | None = None) -> ParsedTargets:
    """Probe states from a node agent's answer, each row validated; with ``node``, rows about any other
    node are refused (an agent speaks for its own node only)."""
    found: list[TargetStatus] = []
    rejected = foreign = 0
    for row in rows if isinstance(rows, list) else ():
        if _row_problem(row) is not None:
            rejected += 1
            continue
        if node is not None and row["node"] != node:
            foreign += 1
            continue
        try:
            found.append(_target_from_json(row))
        except (KeyError, TypeError, ValueError):
            rejected += 1
    return ParsedTargets(tuple(found), rejected, foreign)


def _target_from_json(row: dict[str, Any]) -> TargetStatus:
    codes = row.get("success_codes")
    ranges: tuple[tuple[int, int], ...] = ((200, 399),)
    if isinstance(codes, str) and codes:
        with contextlib.suppress(SuccessCodesError):
            ranges = parse_success_codes(codes, (0, 999)).ranges
    request = ProbeRequest(
        protocol=str(row["protocol"]),
        ip=str(row["ip"]),
        port=int(row["port"]),
        timeout=float(row["timeout_seconds"]),
        path=str(row.get("path") or "/"),
        protocol_version=str(row.get("protocol_version") or "HTTP1"),
        success_ranges=ranges,
    )
    owner = row["owner"]
    target = ProbeTarget(
        owner=ObjectRef(str(owner["kind"]), str(row["namespace"]), str(owner["name"])),
        namespace=str(row["namespace"]),
        service=str(row["service"]),
        pod=str(row["pod"]),
        node=str(row["node"]),
        lb=str(row["lb"]),
        request=request,
        interval=float(row["interval_seconds"]),
        healthy_threshold=int(row["healthy_threshold"]),
        unhealthy_threshold=int(row["unhealthy_threshold"]),
        target_type=str(row.get("target_type") or "ip"),
    )
    health = PredictedHealth(
        LbState(row["predicted_state"]),
        int(row.get("ok_streak") or 0),
        int(row.get("fail_streak") or 0),
        int(row.get("transitions") or 0),
    )
    last = row.get("last_probe")
    if not last:
        return TargetStatus(target, health=health)
    reason = last.get("reason")
    outcome = ProbeOutcome(
        success=bool(last["success"]),
        reason=Reason(reason) if reason in Reason._value2member_map_ else None,
        duration=float(last.get("duration_seconds") or 0.0),
        status_code=last.get("status_code"),
        grpc_status=last.get("grpc_status") if isinstance(last.get("grpc_status"), int) else None,
        detail=str(last.get("detail") or ""),
    )
    at = last.get("at")
    probed_at = None if at is None else datetime.fromisoformat(str(at).replace("Z", "+00:00")).timestamp()
    return TargetStatus(target, outcome, probed_at, health, None if outcome.success else outcome)
