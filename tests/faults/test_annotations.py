"""Annotations cannot buy cost (series, memory) or reach (the kubelet's port)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import scenarios


@pytest.mark.timeout(120)
async def test_a_200_kb_health_check_path_is_a_finding_not_a_200_kb_label(tmp_path: Path) -> None:
    """It used to become a label on every per-target series: /metrics grew from 115 KB to 32 MB and RSS to
    684 MB under eight concurrent scrapes."""
    figures = await scenarios.huge_annotation(tmp_path)
    assert figures["finding"] == ["InvalidAnnotation"], figures
    assert figures["huge_path_requests"] == 0
    assert figures["long_path_probed"]  # a long path AWS accepts is still probed as is
    assert figures["metrics_bytes"] < 100_000, figures
    assert figures["longest_metrics_line"] < 600, figures
    assert figures["api_bytes"] < 100_000 and figures["page_bytes"] < 100_000, figures
    assert figures["peak_rss_mib"] < figures["rss_before_scrapes_mib"] + 40, figures


@pytest.mark.timeout(120)
async def test_a_kubelet_port_annotation_never_reaches_the_kubelet(tmp_path: Path) -> None:
    """healthcheck-port: 10250 on an instance-target Service used to make every node agent call its kubelet."""
    figures = await scenarios.kubelet_port(tmp_path)
    assert figures["kubelet_connections"] == 0, figures
    assert figures["finding"] == ["HealthCheckPortNotInService"], figures
    assert figures["kubelet_port"] not in figures["ports_probed"]
    assert figures["node_port_probes"] > 0  # the default, the traffic port's NodePort, is probed instead
