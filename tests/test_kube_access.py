"""What lbdoctor does when the API server refuses it (fake API server; tests/realkube proves the same
against a real one): a rejected token (401), a Lease it may not touch (403), and the standby's relay of
the leader's /api/v1/targetgroups."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from exporter.fakeapi import FakeApiServer, Fault
from exporter.kube import resources
from exporter.kube.client import KubeClient, TokenFile
from exporter.kube.store import Store
from exporter.kube.watch import Reflector
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.roles.cluster import ClusterAgent
from exporter.roles.leader import LeaderElector
from exporter.settings import load
from exporter.state import Board
from tests.conftest import next_ip
from tests.test_kube_watch import Telemetry, eventually


class Configuration:
    def __init__(self) -> None:
        self.api_key: dict[str, str] = {}


def test_the_token_file_is_read_again_when_rotated_or_rejected(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    token = TokenFile(str(path), check_every=3600)
    configuration = Configuration()
    token(configuration)
    assert configuration.api_key["BearerToken"] == "bearer first"
    path.write_text("second-and-longer")  # the kubelet rotates it
    token(configuration)
    assert configuration.api_key["BearerToken"] == "bearer first"  # not looked at again before check_every
    token.invalidate()  # what a 401 does
    token(configuration)
    assert configuration.api_key["BearerToken"] == "bearer second-and-longer"
    path.unlink()
    token.invalidate()
    token(configuration)  # a missing file keeps the last token rather than failing every request
    assert configuration.api_key["BearerToken"] == "bearer second-and-longer"


async def test_a_rejected_token_is_counted_and_named(api: FakeApiServer, kube: KubeClient) -> None:
    api.inject(Fault(path="/api/v1/services", status=401, times=3))
    telemetry = Telemetry()
    store = Store("services", asyncio.Event())
    reflector = Reflector(kube, resources.SERVICES, store, telemetry, backoff=(0.05,))
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(reflector.run())
        try:
            await eventually(lambda: store.synced)
        finally:
            task.cancel()
    assert telemetry.errors == [("kube", "unauthorized")] * 3
    refused = [entry for entry in logs if entry["event"].startswith("the API server rejected")]
    assert len(refused) == 3 and {(e["resource"], e["verb"], e["log_level"]) for e in refused} == {
        ("services", "list", "warning")
    }


class Errors:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def error(self, component: str, kind: str) -> None:
        self.seen.append((component, kind))


async def test_a_lease_rbac_refuses_is_loud_not_a_silent_standby(api: FakeApiServer, kube: KubeClient) -> None:
    api.inject(Fault(path="/leases/", status=403, times=-1))
    errors = Errors()
    elector = LeaderElector(
        kube,
        name="lbdoctor-cluster",
        namespace="lbdoctor",
        identity="me",
        lease_duration=2,
        on_change=lambda _: None,
        errors=errors,
    )
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(elector.run())
        await eventually(lambda: len(errors.seen) >= 3, timeout=5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert set(errors.seen) == {("leader", "forbidden")} and not elector.leading
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1  # once, not every retry; the counter keeps counting
    assert warnings[0]["lease"] == "lbdoctor/lbdoctor-cluster" and warnings[0]["status"] == 403


@pytest.fixture(name="leader")
async def _leader() -> AsyncIterator[tuple[str, list[Any]]]:
    """A leading replica's /api/v1/targetgroups on a loopback 'pod IP' (the standby uses its own port)."""
    seen: list[Any] = []

    async def targetgroups(request: web.Request) -> web.Response:
        seen.append(request.headers.get("X-Lbdoctor-Proxied"))
        return web.json_response({"schema": "lbdoctor.targetgroups/v1", "cluster": "prod", "target_groups": []})

    app = web.Application()
    app.router.add_get("/api/v1/targetgroups", targetgroups)
    runner = web.AppRunner(app)
    await runner.setup()
    ip = next_ip()
    site = web.TCPSite(runner, ip, 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"{ip}:{port}", seen
    await runner.cleanup()


async def test_the_standby_relays_the_leaders_targetgroups(
    api: FakeApiServer, kube: KubeClient, leader: tuple[str, list[Any]]
) -> None:
    address, seen = leader
    ip, port = address.rsplit(":", 1)
    settings = load(
        {"role": "cluster", "listen": f"127.0.0.1:{port}", "identity": "replica-b", "lease_namespace": "lbdoctor"},
        environ={},
    )
    agent = ClusterAgent(settings, kube, SelfMetrics("cluster"), Board("cluster"))
    try:
        status, body, _ = await agent.targetgroups(False)  # nobody holds the Lease yet
        assert status == 503 and "no leader" in body["error"]
        api.state.apply(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "lbdoctor-cluster", "namespace": "lbdoctor"},
                "spec": {"holderIdentity": "replica-a", "leaseDurationSeconds": 15},
            }
        )
        api.state.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "replica-a", "namespace": "lbdoctor"},
                "status": {"phase": "Running", "podIP": ip},
            }
        )
        agent._leader = None  # forget the failed lookup (it is kept 5 s)
        status, body, headers = await agent.targetgroups(False)
        assert (status, body["cluster"], headers) == (200, "prod", {"X-Lbdoctor-Leader": "replica-a"})
        assert seen == ["replica-b"]  # the leader sees it was proxied, and would not proxy it again
        status, body, _ = await agent.targetgroups(True)
        assert status == 503 and "not the leader either" in body["error"]
        # Through the web server, as a node agent asks it.
        from exporter.web.server import build_app

        board = Board("cluster")
        board.targetgroups = agent.targetgroups
        runner = web.AppRunner(build_app(board, SelfMetrics("cluster")))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/targetgroups"
                async with session.get(url) as response:
                    assert response.status == 200 and json.loads(await response.text())["cluster"] == "prod"
        finally:
            await runner.cleanup()
    finally:
        await agent.close()
