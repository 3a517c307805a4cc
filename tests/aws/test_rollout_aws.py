"""The rollout check, AWS side, against moto: targets still registered whose pod or node is gone or past its
grace period (TerminatedWhileRegistered)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from exporter.aws.doctor import AwsDoctor
from exporter.checks.aws_round import AwsRound
from exporter.model.objects import Pod
from exporter.model.results import Check, Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from tests.aws.faults import patch_target_health
from tests.aws.helpers import one, results, settings
from tests.aws.world import POD_IPS, World

NOW = 1000.0


async def round_with(world: World, snapshot: ClusterSnapshot) -> AwsRound:
    doctor = AwsDoctor(settings())
    try:
        return await doctor.refresh(snapshot, plan=world.plan(snapshot), now=NOW, full=True)
    finally:
        doctor.close()


def without(snapshot: ClusterSnapshot, pods: tuple[str, ...] = (), nodes: tuple[str, ...] = ()) -> ClusterSnapshot:
    return ClusterSnapshot.of(
        services=snapshot.services.values(),
        ingresses=snapshot.ingresses.values(),
        ingress_classes=snapshot.ingress_classes.values(),
        pods=[p for p in snapshot.pods.values() if p.meta.name not in pods],
        nodes=[n for n in snapshot.nodes.values() if n.meta.name not in nodes],
        target_group_bindings=snapshot.target_group_bindings.values(),
    )


async def test_draining_target_whose_pod_is_gone(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    patch_target_health(monkeypatch, {POD_IPS["web-2"]: ("draining", "Target.DeregistrationInProgress", "…")})
    round_ = await round_with(world, without(world.snapshot(), pods=("web-2",)))
    [found] = [r for r in results(round_, Check.ROLLOUT) if r.target is not None and r.target.ip == POD_IPS["web-2"]]
    assert (found.status, found.reason) == (Status.FAIL, Reason.TERMINATED_WHILE_REGISTERED)
    assert (found.object.kind, found.object.name) == ("Ingress", "web")
    assert "still draining (deregistration delay 300 s)" in found.message
    assert f"no pod has address {POD_IPS['web-2']}" in found.message
    # A draining target whose pod still runs is a rollout in progress, not a finding.
    clean = await round_with(world, world.snapshot())
    assert results(clean, Check.ROLLOUT) == []


async def test_pod_killed_while_its_target_is_registered(world: World) -> None:
    snapshot = world.snapshot()
    web2 = snapshot.pods["shop/web-2"]
    late = replace(web2, meta=replace(web2.meta, deleting=True, deletion_deadline=NOW - 40))
    early = replace(web2, meta=replace(web2.meta, deleting=True, deletion_deadline=NOW + 20))
    assert results(await round_with(world, changed_with(snapshot, early)), Check.ROLLOUT, pod="web-2") == []
    found = one(await round_with(world, changed_with(snapshot, late)), Check.ROLLOUT, pod="web-2")
    assert "passed the end of its grace period 40 s ago" in found.message and "still healthy" in found.message


def changed_with(snapshot: ClusterSnapshot, pod: Pod) -> ClusterSnapshot:
    return ClusterSnapshot.of(
        services=snapshot.services.values(),
        ingresses=snapshot.ingresses.values(),
        ingress_classes=snapshot.ingress_classes.values(),
        pods=[pod if p.meta.name == "web-2" else p for p in snapshot.pods.values()],
        nodes=snapshot.nodes.values(),
        target_group_bindings=snapshot.target_group_bindings.values(),
    )


async def test_node_removed_while_draining(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scale-in or Karpenter consolidation: the Node object is gone, its instance still drains."""
    instance = world.instances["node-b"]
    patch_target_health(monkeypatch, {instance: ("draining", "Target.DeregistrationInProgress", "…")})
    round_ = await round_with(world, without(world.snapshot(), pods=("web-2",), nodes=("node-b",)))
    found = [r for r in results(round_, Check.ROLLOUT) if r.reason is Reason.TERMINATED_WHILE_REGISTERED]
    [node] = [r for r in found if world.instances["node-b"] in r.message]
    assert node.object.kind == "Service" and node.object.name == "api"
    assert "no node of the cluster is instance" in node.message and "Karpenter" in node.message
