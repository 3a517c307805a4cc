"""How the roles share what each knows: the cluster role serves the AWS round (metrics, the real
target-group settings), and reads the node agents' probe states over their JSON API."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporter.agents import PeerClient, ProbeFeed, fetch_targetgroups
from exporter.lb.aws_settings import from_document
from exporter.lb.targets import TargetStatus, node_targets
from exporter.lb.thresholds import LbState, PredictedHealth
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.model.probe import ProbeOutcome
from exporter.model.results import Reason, ResultSet
from exporter.report import targets_json
from exporter.state import Board, Published
from exporter.web.server import build_app
from tests.aws.helpers import diagnose
from tests.aws.world import World


class Errors:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def error(self, component: str, kind: str) -> None:
        self.seen.append((component, kind))


async def test_cluster_role_serves_the_aws_round(world: World) -> None:
    round_ = await diagnose(world)
    board = Board("cluster")
    board.publish(Published(ResultSet(1, 0.0, round_.results), aws=round_))
    async with TestServer(build_app(board, SelfMetrics("cluster"))) as server, aiohttp.ClientSession() as session:
        base = str(server.make_url("")).rstrip("/")
        async with session.get(f"{base}/metrics") as response:
            text = await response.text()
        assert 'lbdoctor_elb_target_state{target_group="k8s-shop-web"' in text
        assert "lbdoctor_aws_api_requests_total" in text
        checks = from_document(await fetch_targetgroups(session, base))
        assert checks  # the node agents read and parse it
        board.publish(Published())
        async with session.get(f"{base}/api/v1/targetgroups") as response:
            assert response.status == 404


async def test_probe_states_cross_from_node_agents_to_the_cluster_role(world: World) -> None:
    snapshot = world.snapshot()
    target = next(t for t in node_targets(world.plan(snapshot), snapshot, "node-a").targets if t.pod == "web-1")
    failing = ProbeOutcome(False, Reason.TIMEOUT, 5.0, detail="no complete answer within the health check timeout")
    status = TargetStatus(target, failing, 1_700_000_000.0, PredictedHealth(LbState.HEALTHY, 0, 1, 2), failing)

    async def results(_request: web.Request) -> web.Response:
        return web.json_response(
            {"schema": "lbdoctor.results/v1", "role": "node", "node": "node-a", "targets": targets_json([status])}
        )

    app = web.Application()
    app.router.add_get("/api/v1/results", results)
    errors = Errors()
    feed = ProbeFeed(errors, PeerClient(timeout=2))
    async with TestServer(app) as server:
        got = await feed.fetch([str(server.make_url("")).rstrip("/"), "http://127.0.0.1:1"])
    await feed.close()
    [back] = got
    assert back.target.labels == target.labels and back.target.owner == target.owner
    assert back.target.thresholds == target.thresholds and back.target.interval == target.interval
    assert back.health == status.health  # fail_streak included: the correlation's lead time needs it
    assert back.outcome is not None and back.outcome.reason is Reason.TIMEOUT
    assert back.probed_at == status.probed_at
    assert errors.seen == [("agents", "unreachable")]  # the other agent: counted, not fatal
