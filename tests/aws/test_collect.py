"""The whole AWS side against moto in server mode: discovery, mapping, and a clean bill of health."""

from __future__ import annotations

from exporter.model.results import Check, Status
from tests.aws.helpers import diagnose, one, results
from tests.aws.world import POD_IPS, World


async def test_a_healthy_cluster_is_ok_on_every_aws_check(world: World) -> None:
    """Both target groups are found (bindings and tags), every target is mapped and every check passes."""
    round_ = await diagnose(world)
    bad = [f"{r.check} {r.status} {r.reason} {r.message}" for r in round_.results if r.status is not Status.OK]
    assert not bad
    assert set(round_.aws.target_groups) == {world.web_tg, world.api_tg}
    web = one(round_, Check.ELB_TARGET_HEALTH, pod="web-1")
    assert web.object.kind == "Ingress"
    assert (web.object.namespace, web.object.name) == ("shop", "web")
    assert web.target is not None
    assert (web.target.ip, web.target.port) == (POD_IPS["web-1"], 8080)
    nodes = {r.message.split(" (")[0] for r in results(round_, Check.ELB_TARGET_HEALTH) if r.object.kind == "Service"}
    assert nodes == {"node node-a", "node node-b"}
    assert len(results(round_, Check.SECURITY_GROUPS)) >= 4
    assert len(results(round_, Check.NETWORK)) == 4
