"""The compact exchange between the roles (``/api/v1/probes``, ``lbdoctor.probes/v1``) against the real node
agent: an unchanged node answers 304 Not Modified, the answer costs a fraction of ``/api/v1/results``, a change
is read at the next read, and an agent that stops answering is shown as stale, then unreachable, never healthy."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from exporter.agents import Agent, PeerClient, ProbeFeed
from exporter.demo.apps import App, Behaviour
from exporter.exchange import PROBES_SCHEMA, AgentState, NodeAnswer, agent_findings, matches
from exporter.fakeapi import FakeApiServer
from exporter.model.results import Reason, Status
from tests.conftest import next_ip
from tests.faults.harness import NODE, nlb_object, node_object, pod_object
from tests.faults.running import eventually, running


class _Reads:
    def __init__(self) -> None:
        self.reads: list[tuple[str, int]] = []
        self.errors: list[tuple[str, str]] = []

    def agent_read(self, outcome: str, wire_bytes: int) -> None:
        self.reads.append((outcome, wire_bytes))

    def error(self, component: str, kind: str) -> None:
        self.errors.append((component, kind))


@pytest.fixture(name="agent")
async def _agent(api: FakeApiServer, tmp_path: Path) -> AsyncIterator[tuple[str, list[App]]]:
    """A real node agent probing 20 healthy pods of 4 NLB Services (and its base URL)."""
    apps = []
    api.state.apply(node_object("127.0.0.1"))
    for service in range(4):
        api.state.apply(nlb_object("shop", f"web-{service}", f"web-{service}", 8080, interval=5))
        for index in range(5):
            app = App(next_ip(), 8080, Behaviour())
            await app.start()
            apps.append(app)
            api.state.apply(pod_object("shop", f"web-{service}-{index}", f"web-{service}", app.ip, 8080))
    settings = {"role": "node", "node_name": NODE, "kube_proxy_mode": "off", "kube_proxy_healthz_url": "",
                "kube_proxy_metrics_url": "", "min_probe_interval_seconds": 1}  # fmt: skip
    try:
        async with running(api, tmp_path, **settings) as base:

            async def probed() -> bool:
                async with aiohttp.ClientSession() as session, session.get(f"{base}/api/v1/probes") as response:
                    document = await response.json()
                return len(document["targets"]) == 20 and all(
                    t["predicted_state"] == "healthy" for t in document["targets"]
                )

            await eventually(probed, 40)
            yield base, apps
    finally:
        for app in apps:
            await app.stop()


async def test_an_unchanged_node_answers_304_and_the_answer_costs_little(agent: tuple[str, list[App]]) -> None:
    base, _ = agent
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(f"{base}/api/v1/probes", headers={"Accept-Encoding": "gzip"}) as response:
            assert response.status == 200 and response.headers["Content-Encoding"] == "gzip"
            etag = response.headers["ETag"]
            compact = await response.read()
        document = json.loads(gzip.decompress(compact))
        assert document["schema"] == PROBES_SCHEMA and document["node"] == NODE and document["ready"] is True
        row = document["targets"][0]
        assert "ok_streak" not in row and set(row["last_probe"]) == {
            "success",
            "reason",
            "status_code",
            "grpc_status",
            "detail",
        }
        # Probes keep running (every second here), yet the answer stays the same: nothing changed.
        await asyncio.sleep(2.5)
        async with session.get(f"{base}/api/v1/probes", headers={"If-None-Match": etag}) as response:
            assert response.status == 304 and await response.read() == b""
            assert response.headers["ETag"] == etag
        async with session.get(f"{base}/api/v1/results") as response:
            full = await response.read()
    print(f"FIGURE exchange: /api/v1/results {len(full):,} B, /api/v1/probes {len(compact):,} B gzipped, 304: 0 B")
    assert len(compact) * 10 < len(full)  # 20 healthy targets: a tenth of the full results, and 304 after


async def test_the_feed_reads_changes_and_confirms_the_rest(agent: tuple[str, list[App]]) -> None:
    """ProbeFeed, as the cluster role runs it: the first read is whole, the next ones 304 while nothing changes;
    a pod that starts failing shows at the next read; an agent that stops answering turns stale, then
    unreachable, and is named by a finding."""
    base, apps = agent
    reads = _Reads()
    feed = ProbeFeed(reads, PeerClient(timeout=2), keep_for=3.0, telemetry=reads)
    try:
        assert await feed.read([Agent(base, NODE)]) is True
        assert await feed.read([Agent(base, NODE)]) is False
        [view] = feed.views()
        assert view.state is AgentState.OK and len(view.targets) == 20 and not view.results
        assert [outcome for outcome, _ in reads.reads] == ["changed", "not_modified"]
        (_, whole), (_, confirmed) = reads.reads
        print(f"FIGURE feed: first read {whole} B (gzipped), then 304 in {confirmed} B")
        assert confirmed < 300 and 2 * confirmed < whole  # a 304 is its status line and headers
        apps[0].behaviour.paths = frozenset()  # /healthz answers 404 from now on

        async def failing() -> bool:
            await feed.read([Agent(base, NODE)])
            return any(r.reason is Reason.RESPONSE_CODE_MISMATCH for r in feed.results())

        await eventually(failing, 30, every=0.5)
        assert reads.reads[-1][0] == "changed"
        assert not reads.errors
    finally:
        await feed.close()


async def test_an_agent_that_stops_answering_is_stale_then_unreachable(api: FakeApiServer) -> None:
    from aiohttp import web

    answer = NodeAnswer()

    async def probes(request: web.Request) -> web.Response:
        found = answer.current(None, NODE, True, [], [], 0.0)
        if matches(request.headers.get("If-None-Match"), found.etag):
            return web.Response(status=304, headers={"ETag": found.etag})
        return web.Response(body=found.body, content_type="application/json", headers={"ETag": found.etag})

    app = web.Application()
    app.router.add_get("/api/v1/probes", probes)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    ip = next_ip()
    await web.TCPSite(runner, ip, 0).start()
    agent = Agent(f"http://{ip}:{runner.addresses[0][1]}", NODE)
    reads = _Reads()
    feed = ProbeFeed(reads, PeerClient(timeout=1), keep_for=1.5)
    try:
        await feed.read([agent])
        assert feed.views()[0].state is AgentState.OK
        await runner.cleanup()  # the agent goes away
        assert await feed.read([agent]) is True
        [view] = feed.views()
        assert view.state is AgentState.STALE and view.read_at is not None and "unreachable" in (view.error or "")
        [finding] = agent_findings(feed.views())
        assert (finding.status, finding.reason, finding.object.name) == (
            Status.UNKNOWN,
            Reason.NODE_AGENT_UNREACHABLE,
            NODE,
        )
        await asyncio.sleep(1.6)
        await feed.read([agent])
        [view] = feed.views()
        assert view.state is AgentState.UNREACHABLE and view.read_at is None and not view.targets
        assert ("agents", "unreachable") in reads.errors
        # Its pod went away: shown as gone for as long, then forgotten.
        await feed.read([])
        assert [v.state for v in feed.views()] == []  # never answered within the window: nothing to show
    finally:
        await feed.close()
