"""/metrics renders on the event loop in slices: same exposition as a one-shot render, plain or gzipped."""

from __future__ import annotations

import gzip
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from exporter.lb.targets import TargetStatus
from exporter.lb.thresholds import LbState, PredictedHealth
from exporter.metrics import collectors
from exporter.metrics.collectors import ProbeRenderer
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.model.probe import ProbeOutcome
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, ResultSet, Status
from exporter.state import Board, Published
from exporter.web.server import build_app, exposition_steps, render_metrics
from tests.test_scheduler import target

ClientFactory = Callable[[Any], Awaitable[TestClient[Any, Any]]]


def busy_board(count: int) -> Board:
    """``count`` targets, a third failing, and two check results per target: many slices' worth."""
    statuses = []
    results = []
    for index in range(count):
        failing = index % 3 == 0
        outcome = (
            ProbeOutcome(False, Reason.TIMEOUT, 2.0, None, (("connect", 0.001),))
            if failing
            else ProbeOutcome(True, None, 0.0042, 200, (("connect", 0.0003), ("processing", 0.0031)))
        )
        state = LbState.UNHEALTHY if failing else LbState.HEALTHY
        statuses.append(TargetStatus(target(f"pod-{index}"), outcome, 1.7e9 + index, PredictedHealth(state, 1, 0, 2)))
        pod = ObjectRef("Pod", "shop", f"pod-{index}")
        results.append(CheckResult(Check.POD_STATUS, Status.OK, None, pod, "running"))
        results.append(
            CheckResult(Check.HEALTH_PROBE, Status.FAIL if failing else Status.OK, Reason.TIMEOUT, pod, "probe")
        )
    board = Board("node")
    board.publish(Published(ResultSet(1, 1.7e9, tuple(results)), tuple(statuses), node="n"))
    return board


def without_render_time(text: str) -> list[str]:
    # The render's own duration is a self-metric, different on every render.
    return [line for line in text.splitlines() if not line.startswith('lbdoctor_cycle_duration_seconds{loop="render"}')]


def test_rendering_yields_between_slices_of_targets() -> None:
    board = busy_board(300)
    out: list[bytes] = []
    pauses = sum(1 for _ in exposition_steps(board, SelfMetrics("node"), ProbeRenderer(), out))
    assert pauses >= 300 // collectors.TARGETS_PER_STEP + 600 // collectors.RESULTS_PER_STEP
    assert b"".join(out).count(b"lbdoctor_probe_success{") == 300


async def test_served_exposition_matches_a_one_shot_render(aiohttp_client: ClientFactory) -> None:
    board = busy_board(300)
    metrics = SelfMetrics("node")
    expected = without_render_time(render_metrics(board, metrics, ProbeRenderer()).decode())
    client = await aiohttp_client(build_app(board, metrics))

    plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert plain.status == 200
    assert "Content-Encoding" not in plain.headers
    assert without_render_time(await plain.text()) == expected

    zipped = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert without_render_time(gzip.decompress(await zipped.read()).decode()) == expected
