"""The node role's incremental evaluation must always agree with a full evaluation of the same inputs."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest

from exporter.checks.causes import order
from exporter.dataplane.compare import Finding, Problem
from exporter.dataplane.names import ServicePortName
from exporter.dataplane.report import DataplaneReport, KubeProxyHealth, RulesReport, RulesState, TrackedFinding
from exporter.kube.snapshots import build_snapshot
from exporter.kube.store import Store
from exporter.lb.aws_settings import RealHealthCheck
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.targets import ProbeTarget, TargetStatus
from exporter.lb.thresholds import LbState, PredictedHealth
from exporter.model.objects import (
    Endpoint,
    EndpointSlice,
    Ingress,
    IngressBackend,
    Node,
    NodeAddress,
    ObjectMeta,
    Service,
    ServicePort,
    TargetGroupBinding,
)
from exporter.model.probe import ProbeOutcome
from exporter.model.results import Check, ObjectRef, Reason, Status
from exporter.roles.node_evaluator import NodeEvaluator
from tests.builders import ALB_CLASS, pod

NODE = "n1"
NAMESPACES = ("a", "b", "kube-system")
APPS = ("web", "api", "db")
NLB_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-type": "external",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
}
RESOURCES = ("pods", "services", "endpointslices", "ingresses", "ingressclasses", "targetgroupbindings", "nodes")


class World:
    """A node agent's caches (this node's pods, every Service, slice, Ingress and binding), its probe statuses
    as the scheduler keeps them, its kube-proxy report and the health checks AWS publishes."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        changed = asyncio.Event()
        self.stores = {name: Store(name, changed) for name in RESOURCES}
        for name, store in self.stores.items():
            store.replace([("alb", ALB_CLASS)] if name == "ingressclasses" else [])
        self.statuses: dict[tuple[str, ...], TargetStatus] = {}
        self.dataplane: DataplaneReport | None = None
        self.real: tuple[RealHealthCheck, ...] = ()
        self.clock = 1000.0

    def random_service(self, namespace: str, name: str) -> Service:
        rng = self.rng
        kind = rng.choice(["nlb", "nlb-instance", "plain"])
        annotations = dict(NLB_ANNOTATIONS) if kind.startswith("nlb") else {}
        if kind == "nlb-instance":
            annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] = "instance"
        if kind != "plain" and rng.random() < 0.3:
            annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol"] = "http"
            annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-path"] = rng.choice(["/x", "bad"])
        return Service(
            ObjectMeta(namespace, name, annotations=annotations),
            "LoadBalancer" if kind != "plain" else "ClusterIP",
            {"app": rng.choice(APPS)} if rng.random() < 0.85 else None,
            (ServicePort("http", 80, rng.choice([8080, "http", "nope"]), node_port=30000 + rng.randrange(100)),),
            cluster_ip="10.100.0.1",
            external_traffic_policy=rng.choice(["Cluster", "Local"]),
            health_check_node_port=31000,
        )

    def mutate(self) -> None:
        rng = self.rng
        namespace = rng.choice(NAMESPACES)
        action = rng.randrange(11)
        if action <= 2:
            name = f"p{rng.randrange(6)}"
            if rng.random() < 0.2:
                self.stores["pods"].delete(f"{namespace}/{name}")
            else:
                made = pod(
                    name if namespace != "kube-system" else f"kube-proxy-{name}",
                    app=rng.choice(APPS),
                    namespace=namespace,
                    ip=rng.choice([f"10.0.0.{rng.randrange(9)}", None]),
                    ready=rng.random() < 0.7,
                    waiting=rng.choice([None, None, "CrashLoopBackOff"]),
                    node=NODE,
                )
                self.stores["pods"].upsert(f"{namespace}/{made.meta.name}", made)
        elif action == 3:
            name = f"s{rng.randrange(4)}"
            if rng.random() < 0.15:
                self.stores["services"].delete(f"{namespace}/{name}")
            else:
                self.stores["services"].upsert(f"{namespace}/{name}", self.random_service(namespace, name))
        elif action == 4:
            service = f"s{rng.randrange(4)}"
            endpoints = tuple(
                Endpoint(
                    (f"10.0.0.{i}",), ready=rng.random() < 0.6, node_name=rng.choice([NODE, "n2"]), pod_name=f"p{i}"
                )
                for i in range(rng.randrange(4))
            )
            eps = EndpointSlice(
                ObjectMeta(namespace, f"{service}-x", labels={"kubernetes.io/service-name": service}),
                service,
                "IPv4",
                endpoints,
            )
            self.stores["endpointslices"].upsert(f"{namespace}/{service}-x", eps)
        elif action == 5:
            name = f"i{rng.randrange(3)}"
            if rng.random() < 0.15:
                self.stores["ingresses"].delete(f"{namespace}/{name}")
            else:
                annotations = {"alb.ingress.kubernetes.io/target-type": rng.choice(["ip", "instance"])}
                if rng.random() < 0.3:
                    annotations["alb.ingress.kubernetes.io/success-codes"] = "700"
                backend = IngressBackend(f"s{rng.randrange(5)}", 80, None)
                self.stores["ingresses"].upsert(
                    f"{namespace}/{name}",
                    Ingress(ObjectMeta(namespace, name, annotations=annotations), "alb", (backend,)),
                )
        elif action == 6:
            name = f"b{rng.randrange(2)}"
            binding = TargetGroupBinding(ObjectMeta(namespace, name), "arn:tg", "ip", f"s{rng.randrange(4)}", 80)
            self.stores["targetgroupbindings"].upsert(f"{namespace}/{name}", binding)
        elif action == 7:
            address = rng.choice(["127.0.0.1", "10.1.0.1"])
            self.stores["nodes"].upsert(NODE, Node(ObjectMeta("", NODE), (NodeAddress("InternalIP", address),)))
        elif action == 8:
            self.dataplane = self.random_report()
        elif action == 9 and rng.random() < 0.3:
            self.real = self.random_real()
        else:
            self.probe()

    def random_report(self) -> DataplaneReport | None:
        rng = self.rng
        self.clock += rng.choice([1.0, 30.0])
        if rng.random() < 0.2:
            return None
        findings = tuple(
            TrackedFinding(
                Finding(
                    rng.choice([Problem.ENDPOINT_MISSING, Problem.ENDPOINT_STALE, Problem.SERVICE_RULES_MISSING]),
                    ServicePortName(rng.choice(NAMESPACES), f"s{rng.randrange(6)}", "http", "tcp"),
                    "IPv4",
                    "detail",
                    endpoint=(f"10.0.0.{index}", 8080),
                    pod=f"p{index}",
                ),
                self.clock - rng.choice([0.0, 45.0]),
            )
            for index in range(rng.randrange(3))
        )
        state = rng.choice([RulesState.COMPARED, RulesState.COMPARED, RulesState.UNREADABLE])
        health = KubeProxyHealth(self.clock, "http://127.0.0.1:10256/healthz", True, rng.random() < 0.8, 200)
        return DataplaneReport(RulesReport(state, "d", mode="iptables", findings=findings), health, 30.0, at=self.clock)

    def random_real(self) -> tuple[RealHealthCheck, ...]:
        rng = self.rng
        return tuple(
            RealHealthCheck(
                f"arn:{index}",
                f"tg-{index}",
                ObjectRef(rng.choice(["Service", "Ingress"]), rng.choice(NAMESPACES), f"{rng.choice('si')}{index}"),
                f"s{index}",
                80,
                "ip",
                rng.choice(["HTTP", "TCP"]),
                "traffic-port",
                "/real",
                "200-299",
                None,
                10,
                5,
                3,
                3,
            )
            for index in range(rng.randrange(3))
        )

    def probe(self) -> None:
        """A probe finishes: the scheduler replaces that target's status."""
        if not self.statuses:
            return
        rng = self.rng
        key = rng.choice(sorted(self.statuses))
        status = self.statuses[key]
        success = rng.random() < 0.6
        self.clock += 1.0
        outcome = ProbeOutcome(success, None if success else Reason.TIMEOUT, 0.01, 200 if success else None)
        health = status.health.after(success, status.target.thresholds)
        flips = (*status.flips, self.clock) if health.transitions != status.health.transitions else status.flips
        self.statuses[key] = TargetStatus(
            status.target, outcome, self.clock, health, None if success else outcome, flips
        )

    def set_targets(self, targets: tuple[ProbeTarget, ...]) -> None:
        """What ProbeScheduler.set_targets does with the statuses: keep those of targets that stay."""
        wanted = {target.key: target for target in targets}
        kept = {}
        for key, target in wanted.items():
            existing = self.statuses.get(key)
            if existing is None:
                kept[key] = TargetStatus(target, health=PredictedHealth(LbState.INITIAL))
            elif existing.target != target:
                kept[key] = replace(existing, target=target)
            else:
                kept[key] = existing
        self.statuses = kept


def normalised(results: tuple[object, ...]) -> set[object]:
    return set(order(results))  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(24))
def test_incremental_matches_full(seed: int) -> None:
    rng = random.Random(seed)
    world = World(rng)
    incremental = NodeEvaluator(NODE, ControllerConfig())
    for _ in range(20):
        world.mutate()
    snapshot = build_snapshot(world.stores, 1)
    incremental.derive(snapshot, None, world.real)
    world.set_targets(incremental.targets)
    incremental.evaluate(snapshot, tuple(world.statuses.values()), world.dataplane, world.clock)
    for store in world.stores.values():
        store.take_changes()
    seen: set[Check] = set()
    for generation in range(2, 60):
        for _ in range(rng.randrange(1, 4)):
            world.mutate()
        snapshot = build_snapshot(world.stores, generation)
        changes = {name: store.take_changes() for name, store in world.stores.items()}
        if incremental.derive(snapshot, changes, world.real):
            world.set_targets(incremental.targets)
        statuses = tuple(world.statuses.values())
        got = incremental.evaluate(snapshot, statuses, world.dataplane, world.clock)
        full = NodeEvaluator(NODE, ControllerConfig())
        full.derive(snapshot, None, world.real)
        assert set(full.targets) == set(incremental.targets), f"seed {seed}, generation {generation}"
        fresh = full.evaluate(snapshot, statuses, world.dataplane, world.clock)
        where = f"seed {seed}, generation {generation}"
        assert normalised(got.results) == normalised(fresh.results), where
        assert dict(got.rollup) == dict(fresh.rollup), where
        assert {plan.owner: plan for plan in got.plans} == {plan.owner: plan for plan in fresh.plans}, where
        seen |= {result.check for result in got.results if result.status is not Status.OK}
    # The walk reached every kind of unit: owners (probe verdicts), Services (their pods) and the node.
    assert seen >= {Check.HEALTH_PROBE, Check.POD_STATUS, Check.KUBE_PROXY}, seen


def test_a_finished_probe_re_evaluates_only_its_owner() -> None:
    world = World(random.Random(3))
    for index, app in enumerate(APPS):
        service = Service(
            ObjectMeta("a", f"s{index}", annotations=NLB_ANNOTATIONS),
            "LoadBalancer",
            {"app": app},
            (ServicePort("http", 80, 8080),),
        )
        world.stores["services"].upsert(f"a/s{index}", service)
        world.stores["pods"].upsert(f"a/{app}-1", pod(f"{app}-1", app=app, namespace="a", node=NODE))
    evaluator = NodeEvaluator(NODE, ControllerConfig())
    snapshot = build_snapshot(world.stores, 1)
    evaluator.derive(snapshot, None)
    world.set_targets(evaluator.targets)
    evaluator.evaluate(snapshot, tuple(world.statuses.values()), None, 1.0)
    assert len(evaluator.targets) == 3
    [key] = [key for key, status in world.statuses.items() if status.target.service == "s1"]
    world.statuses[key] = replace(world.statuses[key], outcome=ProbeOutcome(False, Reason.TIMEOUT, 2.0), probed_at=2.0)
    found = evaluator.evaluate(snapshot, tuple(world.statuses.values()), None, 2.0)
    assert evaluator.last_owners_evaluated == {ObjectRef("Service", "a", "s1")}
    assert evaluator.last_units_evaluated == 1
    assert any(r.reason is Reason.TIMEOUT for r in found.results)
    # Nothing changed: nothing is evaluated, and the same round is published again.
    again = evaluator.evaluate(snapshot, tuple(world.statuses.values()), None, 3.0)
    assert evaluator.last_units_evaluated == 0
    assert again is found


def test_a_pod_change_re_derives_only_the_owners_selecting_it() -> None:
    world = World(random.Random(4))
    for index, app in enumerate(APPS):
        service = Service(
            ObjectMeta("a", f"s{index}", annotations=NLB_ANNOTATIONS),
            "LoadBalancer",
            {"app": app},
            (ServicePort("http", 80, 8080),),
        )
        world.stores["services"].upsert(f"a/s{index}", service)
    evaluator = NodeEvaluator(NODE, ControllerConfig())
    snapshot = build_snapshot(world.stores, 1)
    evaluator.derive(snapshot, None)
    evaluator.evaluate(snapshot, (), None, 1.0)
    for store in world.stores.values():
        store.take_changes()
    world.stores["pods"].upsert("a/api-1", pod("api-1", app="api", namespace="a", node=NODE))
    snapshot = build_snapshot(world.stores, 2)
    assert evaluator.derive(snapshot, {name: store.take_changes() for name, store in world.stores.items()})
    assert [target.pod for target in evaluator.targets] == ["api-1"]
    world.set_targets(evaluator.targets)
    evaluator.evaluate(snapshot, tuple(world.statuses.values()), None, 2.0)
    assert evaluator.last_owners_evaluated == {ObjectRef("Service", "a", "s1")}
