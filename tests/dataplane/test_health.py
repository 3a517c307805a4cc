"""kube-proxy's own answers, read over real HTTP on loopback: /healthz, sync metrics, /proxyMode."""

from __future__ import annotations

import socket

import aiohttp

from exporter.dataplane.health import check_health, sync_lag, sync_timestamps
from tests.dataplane.fake_kube_proxy import FakeKubeProxy, metrics_text


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_healthy_kube_proxy_with_per_family_metrics() -> None:
    proxy = FakeKubeProxy(synced={"IPv4": 1000.0, "IPv6": 900.0}, queued={"IPv4": 995.0, "IPv6": 960.0})
    async with proxy, aiohttp.ClientSession() as session:
        health = await check_health(session, proxy.healthz_url, proxy.metrics_url, want_mode=True, clock=lambda: 1010.0)
    assert health.reachable and health.healthy and health.status_code == 200
    assert health.node_eligible is True and "lastUpdated 2026-11-27T01:00:00Z" in health.detail
    assert health.last_sync == 900.0  # the family furthest behind
    assert health.last_queued == 995.0
    assert health.sync_lag == 60.0  # IPv6: queued 960, synced 900
    assert health.proxy_mode == "iptables" and health.checked_at == 1010.0


async def test_unhealthy_and_draining_answers() -> None:
    async with FakeKubeProxy(healthz_status=503, node_eligible=False) as proxy, aiohttp.ClientSession() as session:
        health = await check_health(session, proxy.healthz_url, None)
    assert health.reachable and health.healthy is False and health.status_code == 503
    assert health.node_eligible is False
    assert health.metrics_detail == "not configured" and health.proxy_mode is None


async def test_nothing_listening() -> None:
    port = closed_port()
    async with aiohttp.ClientSession() as session:
        health = await check_health(
            session, f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{port}/metrics", want_mode=True
        )
    assert not health.reachable and health.healthy is None and health.detail == "connection refused"
    assert health.metrics_detail == f"http://127.0.0.1:{port}/metrics: connection refused"
    assert health.sync_lag is None


def test_metrics_before_kube_proxy_1_33_have_no_family_label() -> None:
    synced, queued = sync_timestamps(metrics_text({"": 100.0}, {"": 130.0}))
    assert synced == {"": 100.0} and queued == {"": 130.0}
    assert sync_lag(synced, queued) == 30.0
    assert sync_lag({"": 200.0}, {"": 130.0}) == 0.0  # caught up
    assert sync_timestamps("# some other exporter\nup 1\n") == ({}, {})
