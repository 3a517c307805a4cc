"""A tenant's pods cannot make lbdoctor spin, starve other tenants' probes, or leak their bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import scenarios

# Another tenant's probe may be late by the scheduler's jitter (5 %) plus the machine's noise, never by
# an interval: probes every 5 s, so a gap above 5 * 1.05 + 1.5 s is a missed probe.
MAX_GAP = scenarios.VICTIM_INTERVAL * 1.05 + 1.5


@pytest.mark.timeout(120)
async def test_endless_interim_responses_cost_little_and_hurt_nobody_else(tmp_path: Path) -> None:
    """Nine pods streaming 100 Continue used to make head parsing quadratic, take lbdoctor to 100 % CPU and
    turn seven healthy targets of another namespace Timeout/unhealthy."""
    figures = await scenarios.interim_flood(tmp_path)
    assert figures["attacker_reasons"] == ["InvalidResponse"]
    assert figures["victims_healthy"] == figures["victims"] and figures["victims_failed_last"] == 0, figures
    assert figures["victim_max_gap_seconds"] < MAX_GAP, figures
    assert figures["cpu_share"] < 0.25, figures  # the attack costs lbdoctor a small share of one core


@pytest.mark.timeout(180)
async def test_a_hanging_pod_behind_600_services_starves_nobody_and_is_released_at_once(tmp_path: Path) -> None:
    """600 Services on one hanging pod used to fill the probe pool (others waited up to 49 s) and keep it
    full for ~55 s after the Services were deleted."""
    figures = await scenarios.hanging_pod(tmp_path)
    assert figures["victims_healthy"] == figures["victims"], figures
    assert figures["victim_max_gap_seconds"] < MAX_GAP, figures
    assert figures["hanging_connections_before_delete"] > 0  # the attack did hold slots
    assert figures["hanging_connections_3s_after_delete"] == 0, figures
    assert figures["seconds_until_released"] <= 3.0, figures


@pytest.mark.timeout(120)
async def test_what_held_keeps_holding(tmp_path: Path) -> None:
    """A non-HTTP banner is not echoed (up to 40 bytes of it used to reach the page and API); HTML in an
    annotation is escaped; CRLF in a path never reaches a request; an endless body is read up to the
    cap; a 1 MB request header gets a 400 and the daemon keeps serving."""
    figures = await scenarios.banner_and_held(tmp_path)
    assert figures["banner_reason"] == "InvalidResponse"
    assert not figures["banner_echoed"], figures
    assert figures["script_escaped"] and not figures["script_unescaped"]
    assert not figures["crlf_injected"] and figures["crlf_probed_default_path"]
    assert figures["endless_body_healthy"]
    assert " 400 " in figures["huge_header_status"] + " " and figures["still_serving"]
