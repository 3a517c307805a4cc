"""A crowd of connections cannot take the node agent's descriptors from its probes, nor flood its logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import scenarios
from tests.faults.test_probing import MAX_GAP


@pytest.mark.timeout(180)
async def test_1100_idle_connections_leave_probes_and_scrapes_working(tmp_path: Path) -> None:
    """With 1,024 descriptors, 1,100 idle connections used to exhaust them: every healthy target went
    unhealthy with "Too many open files", and 144 MB of accept errors were logged."""
    figures = await scenarios.idle_connections(tmp_path)
    for phase in ("one_source", "many_sources"):
        assert figures[f"{phase}_victim_max_gap_seconds"] < MAX_GAP, figures
        assert figures[f"{phase}_peak_descriptors"] < 1024 - 200, figures  # room for every probe slot
    assert figures["one_source_scrape_ok"], figures  # another client is served during the attack
    assert figures["victims_healthy"] == figures["victims"] and figures["victims_failed_last"] == 0, figures
    assert not figures["too_many_open_files_logged"]
    assert figures["log_bytes"] < 20_000, figures
    assert figures["connections_reset"] > 1000
