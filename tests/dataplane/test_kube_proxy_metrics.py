"""The kube-proxy families render only what the last round published, and vanish when nothing is known."""

from __future__ import annotations

from dataclasses import replace

import pytest

from exporter.dataplane.compare import Finding, Problem
from exporter.dataplane.names import ServicePortName
from exporter.dataplane.report import DataplaneReport, KubeProxyHealth, RulesReport, RulesState, TrackedFinding
from exporter.metrics.collectors import render_kube_proxy
from exporter.model.results import Check, CheckResult, ObjectRef, ResultSet, Status
from exporter.settings import Settings, SettingsError, load

NODE = "node-a"
NOW = 5000.0
WEB = ServicePortName("shop", "web", "http", "tcp")
HEALTH = KubeProxyHealth(
    NOW, "http://127.0.0.1:10256/healthz", reachable=True, healthy=True, status_code=200, sync_lag=2.5
)


def text(report: DataplaneReport | None, results: tuple[CheckResult, ...] = ()) -> str:
    return "".join(render_kube_proxy(NODE, report, ResultSet(1, NOW, results)))


def test_counts_per_service_past_the_grace_period() -> None:
    findings = (
        TrackedFinding(Finding(Problem.ENDPOINT_MISSING, WEB, "IPv4", "d", ("10.0.0.1", 80)), NOW - 60),
        TrackedFinding(Finding(Problem.ENDPOINT_MISSING, WEB, "IPv4", "d", ("10.0.0.2", 80)), NOW - 5),  # settling
        TrackedFinding(Finding(Problem.REJECTING, WEB, "IPv4", "d", port=80), NOW - 60),
    )
    ok = CheckResult(Check.KUBE_PROXY, Status.OK, None, ObjectRef("Service", "shop", "quiet"), "m")
    report = DataplaneReport(RulesReport(RulesState.COMPARED, findings=findings), HEALTH, grace=30.0)
    out = text(report, (ok,))
    assert 'lbdoctor_kube_proxy_rules_missing{node="node-a",namespace="shop",service="web"} 1\n' in out
    assert 'lbdoctor_kube_proxy_rules_stale{node="node-a",namespace="shop",service="web"} 1\n' in out
    assert 'service="quiet"' not in out  # a Service whose rules match costs no series on any node
    # A scrape's budget narrows the Services shown (collectors.select decides which).
    assert 'service="web"' not in "".join(render_kube_proxy(NODE, report, ResultSet(1, NOW, (ok,)), services=()))
    assert 'lbdoctor_kube_proxy_sync_lag_seconds{node="node-a"} 2.5\n' in out
    assert 'lbdoctor_kube_proxy_healthy{node="node-a"} 1\n' in out


def test_unknown_rules_and_missing_kube_proxy_leave_no_series() -> None:
    silent = replace(HEALTH, reachable=False, healthy=None, sync_lag=None)
    unreadable = text(DataplaneReport(RulesReport(RulesState.UNREADABLE), silent))
    not_found = text(DataplaneReport(RulesReport(RulesState.NOT_FOUND), silent))
    for out in (unreadable, not_found, text(None), text(DataplaneReport(RulesReport(RulesState.DISABLED), HEALTH))):
        assert out == ""  # not even the HELP lines: the families do not exist on such a node
    # kube-proxy's rules are there but it does not answer: that is a 0, not an absence.
    assert 'lbdoctor_kube_proxy_healthy{node="node-a"} 0\n' in text(
        DataplaneReport(RulesReport(RulesState.COMPARED), silent)
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"kube_proxy_mode": "userspace"},
        {"kube_proxy_healthz_url": "127.0.0.1:10256"},
        {"kube_proxy_command_prefix": "nsenter '"},
    ],
)
def test_kube_proxy_settings_are_validated(bad: dict[str, str]) -> None:
    assert Settings(node_name=NODE).kube_proxy_grace_seconds == 30.0
    with pytest.raises(SettingsError, match=next(iter(bad))):
        load({"node_name": NODE, **bad}, environ={})
