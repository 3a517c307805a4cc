"""The node agent's dataplane loop: rounds over time, with a clock the test moves (no sleeping)."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from exporter.checks import kube_proxy
from exporter.dataplane.monitor import DataplaneMonitor, MonitorConfig
from exporter.dataplane.readers import DataplaneReader, Runner
from exporter.dataplane.report import RulesState
from exporter.model.results import Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from tests.dataplane.conftest import Netns
from tests.dataplane.fake_kube_proxy import FakeKubeProxy
from tests.dataplane.generator import NODE, Ep, Svc, iptables_restore, kubelet_hint, snapshot, with_fault

SERVICES = [
    Svc("web", "172.20.0.10", (Ep("10.244.1.5", pod="web-1"), Ep("10.244.1.7", pod="web-2")), node_port=30080),
]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Errors:
    def __init__(self) -> None:
        self.counted: list[tuple[str, str]] = []

    def error(self, component: str, kind: str) -> None:
        self.counted.append((component, kind))


def monitor_for(
    proxy: FakeKubeProxy,
    netns: Netns | None,
    clock: Clock,
    errors: Errors,
    cluster: ClusterSnapshot | None,
    **extra: object,
) -> DataplaneMonitor:
    config = MonitorConfig(
        NODE,
        grace=30.0,
        healthz_url=proxy.healthz_url,
        metrics_url=proxy.metrics_url,
        command_prefix=shlex.join(netns.prefix) if netns else "",
    )
    return DataplaneMonitor(config, errors, lambda: cluster, clock=clock, **extra)  # type: ignore[arg-type]


async def test_a_fault_is_reported_after_the_grace_period_and_cleared_when_fixed(netns: Netns) -> None:
    netns.restore(kubelet_hint(), "nft")
    netns.restore(iptables_restore(with_fault(SERVICES, "web", programmed=("10.244.1.7",))), "nft")
    cluster = snapshot(SERVICES)
    clock, errors = Clock(), Errors()
    async with FakeKubeProxy() as proxy, aiohttp.ClientSession() as session:
        monitor = monitor_for(proxy, netns, clock, errors, cluster)
        report = await monitor.round(session)
        assert monitor.changed.is_set()
        assert (report.rules.state, report.rules.mode, report.rules.backend) == (RulesState.COMPARED, "iptables", "nft")
        assert len(report.rules.findings) == 1 and report.due(clock.now) == ()  # kube-proxy may still catch up
        assert not [r for r in kube_proxy.verdicts(NODE, report, cluster, set(), clock.now) if r.status is Status.FAIL]

        clock.now += 31
        report = await monitor.round(session)
        [due] = report.due(clock.now)
        assert due.first_seen == 1_000_000.0 and due.finding.endpoint == ("10.244.1.5", 8080)
        [failing] = [r for r in kube_proxy.verdicts(NODE, report, cluster, set(), clock.now) if r.status is Status.FAIL]
        assert failing.reason is Reason.ENDPOINT_RULES_MISSING and failing.target is not None
        assert failing.target.pod == "web-1"

        netns.restore(iptables_restore(SERVICES), "nft", flush=True)  # kube-proxy's next full sync
        clock.now += 30
        report = await monitor.round(session)
        assert report.rules.findings == () and report.health is not None and report.health.healthy
    assert errors.counted == []


async def test_a_sync_that_stays_behind_becomes_stale(netns: Netns) -> None:
    netns.restore(iptables_restore(SERVICES), "legacy")
    clock, errors = Clock(), Errors()
    proxy = FakeKubeProxy(synced={"IPv4": clock.now - 100}, queued={"IPv4": clock.now - 5})
    async with proxy, aiohttp.ClientSession() as session:
        monitor = monitor_for(proxy, netns, clock, errors, snapshot(SERVICES))
        first = await monitor.round(session)
        assert first.sync_pending_since == clock.now
        clock.now += 45
        later = await monitor.round(session)
        assert later.sync_pending_since == clock.now - 45
        [stale] = [
            r
            for r in kube_proxy.verdicts(NODE, later, snapshot(SERVICES), set(), clock.now)
            if r.reason is Reason.KUBE_PROXY_SYNC_STALE
        ]
        assert stale.status is Status.WARN and "(queued - synced = 95 s)" in stale.message
        proxy.synced = {"IPv4": clock.now - 1}  # it synced
        clock.now += 5
        assert (await monitor.round(session)).sync_pending_since is None


async def test_unreadable_rules_are_counted_logged_once_and_the_loop_goes_on(tmp_path: Path) -> None:
    clock, errors = Clock(), Errors()
    reader = DataplaneReader(Runner(env={"PATH": str(tmp_path)}))
    async with FakeKubeProxy() as proxy, aiohttp.ClientSession() as session:
        monitor = monitor_for(proxy, None, clock, errors, snapshot(SERVICES), reader=reader)
        with capture_logs() as logs:
            for _ in range(3):
                report = await monitor.round(session)
                clock.now += 30
    assert report.rules.state is RulesState.UNREADABLE and report.rules.failure == "missing_binary"
    assert errors.counted == [("dataplane", "missing_binary")] * 3
    assert [entry["event"] for entry in logs] == ["kube-proxy rules unreadable"]
    [rules] = [r for r in kube_proxy.verdicts(NODE, report, snapshot(SERVICES), set(), clock.now) if r.target is None]
    assert rules.status is Status.UNKNOWN and rules.reason is Reason.KUBE_PROXY_RULES_UNREADABLE


async def test_nothing_is_compared_before_the_caches_are_synced() -> None:
    async with FakeKubeProxy() as proxy, aiohttp.ClientSession() as session:
        monitor = monitor_for(proxy, None, Clock(), Errors(), None)
        report = await monitor.round(session)
    assert report.rules.state is RulesState.PENDING and "caches" in report.rules.detail


@pytest.mark.timeout(10)
async def test_mode_off_publishes_disabled_and_waits() -> None:
    monitor = DataplaneMonitor(MonitorConfig(NODE, mode="off"), Errors(), lambda: None)
    task = asyncio.create_task(monitor.run())
    await monitor.changed.wait()
    assert monitor.report.rules.state is RulesState.DISABLED and not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
