"""One probe target per target group and pod: one Service behind two ALBs whose health checks differ only in
success codes is probed for each, and each gets its own series, verdict, result, JSON row and status row.

The pod is a real HTTP app on a loopback address answering 301; the scheduler probes it with the real
HTTP prober for both target groups.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

from exporter.checks import NodeContext, evaluate_node
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import build_plan, plan_all
from exporter.lb.targets import node_targets
from exporter.lb.thresholds import LbState
from exporter.metrics.collectors import ProbeRenderer
from exporter.model.results import Check, ObjectRef, Reason, ResultSet, Status
from exporter.model.snapshot import ClusterSnapshot
from exporter.probes import PROBERS
from exporter.report import results_json, targets_from_json, targets_json
from exporter.scheduler import ProbeScheduler
from exporter.state import Published
from exporter.web import statuspage
from tests.builders import ALB_CLASS, NODE, ingress, pod, service
from tests.conftest import next_ip
from tests.servers import Server, respond
from tests.test_scheduler import Telemetry

ALB = "alb.ingress.kubernetes.io/"


def two_albs(ip: str, port: int) -> ClusterSnapshot:
    """Service shop/web behind Ingress public (group public, success codes 200, the default) and Ingress
    internal (group internal, success codes 200-399): two ALBs, two target groups, one pod."""
    web = service("web", ports=(replace(service().ports[0], target_port=port),))
    public = ingress("public", annotations={ALB + "group.name": "public", ALB + "healthcheck-path": "/healthz"})
    internal = ingress(
        "internal",
        annotations={ALB + "group.name": "internal", ALB + "healthcheck-path": "/healthz", ALB + "success-codes": "200-399"},
    )
    return ClusterSnapshot.of(services=[web], ingresses=[public, internal], ingress_classes=[ALB_CLASS], pods=[pod(ip=ip)])


async def test_two_ingress_groups_on_one_service_give_two_series_and_two_verdicts() -> None:
    ip = next_ip()
    async with Server(ip, respond(301)) as app:
        snapshot = two_albs(ip, app.port)
        plan = build_plan(snapshot, ControllerConfig())
        targets = node_targets(plan, snapshot, NODE)
        assert sorted(t.owner.name for t in targets.targets) == ["internal", "public"]
        assert len({t.key for t in targets.targets}) == 2  # the same pod, port and path: two identities
        scheduler = ProbeScheduler(PROBERS, Telemetry(), min_interval=0.05)
        scheduler.set_targets([replace(t, interval=0.1) for t in targets.targets])
        runner = asyncio.create_task(scheduler.run())
        try:
            for _ in range(200):
                states = {s.target.owner.name: s.health.state for s in scheduler.statuses()}
                if states == {"public": LbState.UNHEALTHY, "internal": LbState.HEALTHY}:
                    break
                await asyncio.sleep(0.05)
        finally:
            runner.cancel()
            await scheduler.close()
    assert states == {"public": LbState.UNHEALTHY, "internal": LbState.HEALTHY}
    statuses = scheduler.statuses()
    by_owner = {s.target.owner.name: s for s in statuses}
    assert by_owner["public"].outcome is not None and by_owner["public"].outcome.reason is Reason.RESPONSE_CODE_MISMATCH
    assert by_owner["internal"].outcome is not None and by_owner["internal"].outcome.status_code == 301

    # Two series per family, told apart by the owner label.
    text = "".join(ProbeRenderer().render(statuses))
    predicted = dict(re.findall(r'lbdoctor_probe_predicted_healthy\{[^}]*owner="([^"]+)"\} (\d)', text))
    assert predicted == {"ingress/public": "0", "ingress/internal": "1"}
    assert len(re.findall(r"^lbdoctor_probe_success\{", text, re.MULTILINE)) == 2

    # Two health_probe results, one per Ingress, with their own verdicts.
    results = evaluate_node(NodeContext(NODE, snapshot, plan, targets, statuses, 1000.0))
    probes = {r.object: r for r in results if r.check is Check.HEALTH_PROBE}
    public, internal = probes[ObjectRef("Ingress", "shop", "public")], probes[ObjectRef("Ingress", "shop", "internal")]
    assert (public.status, public.reason) == (Status.FAIL, Reason.RESPONSE_CODE_MISMATCH)
    assert internal.status is Status.OK and public.target == internal.target

    # The JSON API keeps them apart, and the cluster role reads them back apart.
    rows = targets_json(statuses)
    assert sorted((row["owner"]["name"], row["success_codes"], row["predicted_state"]) for row in rows) == [
        ("internal", "200-399", "healthy"),
        ("public", "200", "unhealthy"),
    ]
    back = targets_from_json(rows)
    assert {s.target.key for s in back} == {s.target.key for s in statuses}
    assert {s.target.owner.name: s.target.request.success_ranges for s in back} == {
        "public": ((200, 200),),
        "internal": ((200, 399),),
    }
    assert {r["object"]["name"]: r["status"] for r in results_json(results) if r["check"] == "health_probe"} == {
        "public": "fail",
        "internal": "ok",
    }

    # The status page shows each load balancer with its own row for the pod.
    page = statuspage.render(
        Published(ResultSet(1, 1000.0, results), statuses, node=NODE, plans=tuple(plan_all(snapshot, ControllerConfig())), snapshot=snapshot),
        role="node",
        ready=True,
        not_ready_because="",
    )
    sections = dict(re.findall(r'<section data-owner="ingress/shop/(\w+)">(.*?)</section>', page, re.DOTALL))
    assert 'data-reason="ResponseCodeMismatch"' in sections["public"]
    assert "ResponseCodeMismatch" not in sections["internal"] and 'data-pod="web-1"' in sections["internal"]
