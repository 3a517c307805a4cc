"""What makes lbdoctor read a target group's health before its sweep is due, against moto over real HTTP.

CloudWatch (moto's, holding the UnHealthyHostCount the load balancer would publish), a pod waiting on
the target group's readiness gate, and a reconcile failure the controller reported on its binding.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import boto3
import pytest

from exporter.aws.doctor import AwsDoctor
from exporter.demo.elb import publish
from exporter.model.index import ObjectIndex
from exporter.model.objects import KubeEvent, ObjectMeta
from exporter.model.snapshot import ClusterSnapshot
from tests.aws.faults import patch_target_health
from tests.aws.helpers import settings
from tests.aws.world import POD_IPS, REGION, World

# The sweep alone would not read anything again within these tests.
QUIET = {"target_health_interval": 3000.0, "hot_interval": 1000.0, "topology_interval": 30000.0}


def states(round_: Any, ip: str) -> set[str]:
    return {row.state for row in round_.targets if row.target == ip}


async def test_cloudwatch_disagreeing_with_the_last_read_triggers_one(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    doctor = AwsDoctor(settings(cloudwatch="on", **QUIET))
    t0 = time.time()
    try:
        first = await doctor.refresh(world.snapshot(), plan=world.plan(), now=t0)
        assert states(first, POD_IPS["web-1"]) == {"healthy"}
        # The load balancer marks web-1 unhealthy and says so in its minute's UnHealthyHostCount.
        patch_target_health(monkeypatch, {POD_IPS["web-1"]: ("unhealthy", "Target.Timeout", "Request timed out")})
        minute = math.floor(t0 / 60) * 60
        cloudwatch = boto3.client("cloudwatch", region_name=REGION, endpoint_url=world.url)
        publish(cloudwatch, minute, {world.web_tg: 1, world.api_tg: 0}, {world.web_tg: [world.alb], world.api_tg: [world.nlb]})
        later = minute + 60 + 11  # the minute is over and the poll, aligned 10 s after it, is due
        second = await doctor.refresh(world.snapshot(), plan=world.plan(), now=later)
        assert states(second, POD_IPS["web-1"]) == {"unhealthy"}
        reads = second.aws.target_health_reads
        assert reads == {"first": 2, "cloudwatch": 1}  # only the web target group, and only because of CloudWatch
        assert second.aws.cloudwatch_watched == 2
        assert second.aws.api_requests[("GetMetricData", "success")] >= 1
        # The same datapoint again, now agreeing with what was read: no further read.
        third = await doctor.refresh(world.snapshot(), plan=world.plan(), now=later + 60)
        assert third.aws.target_health_reads == reads
    finally:
        doctor.close()


async def test_cloudwatch_agreeing_triggers_nothing_and_auto_stays_idle_for_small_clusters(world: World) -> None:
    doctor = AwsDoctor(settings(cloudwatch="on", **QUIET))
    auto = AwsDoctor(settings(**QUIET))
    t0 = time.time()
    try:
        await doctor.refresh(world.snapshot(), plan=world.plan(), now=t0)
        await auto.refresh(world.snapshot(), plan=world.plan(), now=t0)
        minute = math.floor(t0 / 60) * 60
        cloudwatch = boto3.client("cloudwatch", region_name=REGION, endpoint_url=world.url)
        publish(cloudwatch, minute, {world.web_tg: 0, world.api_tg: 0}, {world.web_tg: [world.alb], world.api_tg: [world.nlb]})
        second = await doctor.refresh(world.snapshot(), plan=world.plan(), now=minute + 71)
        assert second.aws.target_health_reads == {"first": 2}
        idle = await auto.refresh(world.snapshot(), plan=world.plan(), now=minute + 71)
        assert idle.aws.cloudwatch_watched == 0  # 2 target groups: the sweep covers them within the budget
        assert ("GetMetricData", "success") not in idle.aws.api_requests
    finally:
        doctor.close()
        auto.close()


async def test_a_pod_waiting_on_the_readiness_gate_makes_its_target_group_hot(world: World) -> None:
    doctor = AwsDoctor(settings(**{**QUIET, "hot_interval": 15.0}))
    try:
        await doctor.refresh(world.snapshot(), plan=world.plan(), now=1000.0)
        calm = await doctor.refresh(world.snapshot(), plan=world.plan(), now=1006.0)
        assert calm.aws.target_health_reads == {"first": 2}
        waiting = await doctor.refresh(world.snapshot(), plan=world.plan(), waiting={world.web_tg}, now=1006.0)
        assert waiting.aws.target_health_reads == {"first": 2, "readiness_gate": 1}  # at once: news
        again = await doctor.refresh(world.snapshot(), plan=world.plan(), waiting={world.web_tg}, now=1012.0)
        assert again.aws.target_health_reads["readiness_gate"] == 1  # then at the hot interval
        hot = await doctor.refresh(world.snapshot(), plan=world.plan(), waiting={world.web_tg}, now=1022.0)
        assert hot.aws.target_health_reads["readiness_gate"] == 2
    finally:
        doctor.close()


def with_events(snapshot: ClusterSnapshot, *events: KubeEvent) -> ClusterSnapshot:
    return dataclasses.replace(snapshot, events=ObjectIndex.of(events))


def failure(count: int) -> KubeEvent:
    return KubeEvent(
        ObjectMeta("shop", "k8s-shop-web.18a1"),
        "TargetGroupBinding",
        "shop",
        "k8s-shop-web",
        "FailedReconcile",
        "Failed reconcile due to TargetGroupNotFound: One or more target groups not found",
        count=count,
        last_seen=f"2026-11-27T00:0{count}:00Z",
    )


async def test_a_reconcile_failure_on_a_binding_reads_its_target_group_at_once(world: World) -> None:
    doctor = AwsDoctor(settings(**QUIET))
    try:
        await doctor.refresh(world.snapshot(), plan=world.plan(), now=1000.0)
        failed = await doctor.refresh(with_events(world.snapshot(), failure(1)), plan=world.plan(), now=1010.0)
        assert failed.aws.target_health_reads == {"first": 2, "binding": 1}
        same = await doctor.refresh(with_events(world.snapshot(), failure(1)), plan=world.plan(), now=1020.0)
        assert same.aws.target_health_reads == {"first": 2, "binding": 1}  # an Event already seen is not news
        repeated = await doctor.refresh(with_events(world.snapshot(), failure(2)), plan=world.plan(), now=1030.0)
        assert repeated.aws.target_health_reads == {"first": 2, "binding": 2}  # it happened again
    finally:
        doctor.close()


async def test_a_binding_whose_target_group_was_deleted_is_found_out_by_its_reconcile_failure(world: World) -> None:
    doctor = AwsDoctor(settings(**QUIET))
    try:
        await doctor.refresh(world.snapshot(), plan=world.plan(), now=1000.0)
        listener = world.elbv2.describe_listeners(LoadBalancerArn=world.alb)["Listeners"][0]["ListenerArn"]
        world.elbv2.delete_listener(ListenerArn=listener)
        world.elbv2.delete_target_group(TargetGroupArn=world.web_tg)
        gone = await doctor.refresh(with_events(world.snapshot(), failure(1)), plan=world.plan(), now=1010.0)
        assert world.web_tg in gone.aws.missing
        assert any(r.reason is not None and r.reason.value == "TargetGroupNotFound" for r in gone.results)
        assert gone.aws.api_requests[("DescribeTargetHealth", "not_found")] == 1
    finally:
        doctor.close()
