"""Incremental evaluation must always agree with a full evaluation of the same snapshot."""

from __future__ import annotations

import asyncio
import random

import pytest

from exporter.checks.causes import link, link_round, order
from exporter.checks.controller import ControllerLocation
from exporter.kube import convert_gateway
from exporter.kube.snapshots import build_snapshot
from exporter.kube.store import Store
from exporter.lb.healthcheck import ControllerConfig
from exporter.model.objects import (
    Endpoint,
    EndpointSlice,
    Ingress,
    IngressBackend,
    KubeEvent,
    Node,
    ObjectMeta,
    Service,
    ServicePort,
)
from exporter.model.results import Status
from exporter.roles.cluster_evaluator import IncrementalEvaluator
from tests import gateway_objects as g
from tests.builders import ALB_CLASS, pod

NAMESPACES = ("a", "b")
APPS = ("web", "api", "db")
NLB_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-type": "external",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
}
RESOURCES = (
    "pods",
    "services",
    "endpointslices",
    "ingresses",
    "ingressclasses",
    "targetgroupbindings",
    "nodes",
    "deployments",
    "events",
    "gatewayclasses",
    "gateways",
    "httproutes",
    "targetgroupconfigurations",
)


class World:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        changed = asyncio.Event()
        self.stores = {name: Store(name, changed) for name in RESOURCES}
        for name, store in self.stores.items():
            store.replace([("alb", ALB_CLASS)] if name == "ingressclasses" else [])
        self.stores["gatewayclasses"].replace([("aws-alb", convert_gateway.gateway_class(g.gateway_class()))])
        self.stores["gateways"].replace(
            [(f"{ns}/gw", convert_gateway.gateway(g.gateway("gw", namespace=ns))) for ns in NAMESPACES]
        )

    def random_service(self, namespace: str, name: str) -> Service:
        rng = self.rng
        kind = rng.choice(["nlb", "plain", "nodeport"])
        annotations = dict(NLB_ANNOTATIONS) if kind == "nlb" else {}
        if kind == "nlb" and rng.random() < 0.3:
            annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-path"] = "/x"
        return Service(
            ObjectMeta(namespace, name, annotations=annotations),
            "LoadBalancer" if kind == "nlb" else ("NodePort" if kind == "nodeport" else "ClusterIP"),
            {"app": rng.choice(APPS)} if rng.random() < 0.9 else None,
            (ServicePort("http", 80, rng.choice([8080, "http", "nope"]), node_port=30000 + rng.randrange(100)),),
            external_traffic_policy=rng.choice(["Cluster", "Local"]),
        )

    def mutate(self) -> None:
        rng = self.rng
        namespace = rng.choice(NAMESPACES)
        action = rng.randrange(10)
        if action <= 2:
            name = f"p{rng.randrange(8)}"
            if rng.random() < 0.2:
                self.stores["pods"].delete(f"{namespace}/{name}")
            else:
                made = pod(
                    name,
                    app=rng.choice(APPS),
                    namespace=namespace,
                    ready=rng.random() < 0.7,
                    waiting=rng.choice([None, None, "CrashLoopBackOff"]),
                    node=rng.choice(["n1", "n2"]),
                )
                self.stores["pods"].upsert(f"{namespace}/{name}", made)
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
                    (f"10.0.0.{i}",), ready=rng.random() < 0.6, node_name=rng.choice(["n1", "n2"]), pod_name=f"p{i}"
                )
                for i in range(rng.randrange(3))
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
        elif action == 8:
            name = f"r{rng.randrange(3)}"
            if rng.random() < 0.15:
                self.stores["httproutes"].delete(f"{namespace}/{name}")
            else:
                backends = [{"name": f"s{rng.randrange(5)}", "port": rng.choice([80, 81])}]
                route = g.route(name=name, namespace=namespace, gateway_name="gw", backends=backends)
                self.stores["httproutes"].upsert(f"{namespace}/{name}", convert_gateway.route("HTTPRoute")(route))
        elif action == 9:
            name = f"t{rng.randrange(2)}"
            if rng.random() < 0.2:
                self.stores["targetgroupconfigurations"].delete(f"{namespace}/{name}")
            else:
                check = {"healthCheckPath": rng.choice(["/", "/healthz"]), "healthCheckInterval": rng.choice([2, 10])}
                tgc = g.tgc(name, namespace, service=f"s{rng.randrange(4)}", default={"healthCheckConfig": check})
                self.stores["targetgroupconfigurations"].upsert(
                    f"{namespace}/{name}", convert_gateway.target_group_configuration(tgc)
                )
        elif action == 6:
            name = rng.choice(["n1", "n2", "n3"])
            self.stores["nodes"].upsert(name, Node(ObjectMeta("", name), ready=rng.random() < 0.8))
        else:
            target = rng.choice([("Ingress", f"i{rng.randrange(3)}"), ("Service", f"s{rng.randrange(4)}")])
            event = KubeEvent(
                ObjectMeta(namespace, f"ev{rng.randrange(3)}"),
                target[0],
                namespace,
                target[1],
                rng.choice(["FailedBuildModel", "FailedDeployModel"]),
                rng.choice(["boom", "api error AccessDenied: not authorized to perform: ec2:DescribeSubnets"]),
            )
            self.stores["events"].upsert(f"{namespace}/{event.meta.name}", event)


def normalised(results: tuple[object, ...]) -> set[object]:
    return set(order(results))  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(12))
def test_incremental_matches_full(seed: int) -> None:
    rng = random.Random(seed)
    world = World(rng)
    where = ControllerLocation()
    incremental = IncrementalEvaluator(ControllerConfig(), where, include_controller=True)
    for _ in range(20):
        world.mutate()
    snapshot = build_snapshot(world.stores, 1)
    incremental.evaluate(snapshot, None)
    for store in world.stores.values():
        store.take_changes()
    for generation in range(2, 40):
        for _ in range(rng.randrange(1, 4)):
            world.mutate()
        snapshot = build_snapshot(world.stores, generation)
        changes = {name: store.take_changes() for name, store in world.stores.items()}
        got = incremental.evaluate(snapshot, changes)
        full = IncrementalEvaluator(ControllerConfig(), where, include_controller=True)
        fresh = full.evaluate(snapshot, None)
        assert normalised(got) == normalised(fresh), f"seed {seed}, generation {generation}"
        # The status per check and load balancer, kept unit by unit, equals the one of a full evaluation.
        assert dict(incremental.rollup()) == dict(full.rollup()), f"seed {seed}, generation {generation}"
        # What the causal rules read each round: the failing results, kept apart as units change.
        steady, failing = incremental.split()
        assert sorted(map(repr, (*steady, *failing))) == sorted(map(repr, got))
        assert {r.status for r in failing} <= {Status.FAIL, Status.WARN} and Status.FAIL not in {r.status for r in steady}
        # Linked over the failures only, the round equals the whole round linked.
        assert normalised((*steady, *link_round(failing, ()))) == normalised(tuple(link(fresh)))


def test_one_pod_change_re_evaluates_only_its_services() -> None:
    """A pod reaches the Services selecting it, and failing selectors (their message names near misses)."""
    world = World(random.Random(1))
    for namespace in NAMESPACES:
        for index, app in enumerate(("web", "api", "web", "cache")):
            world.stores["services"].upsert(
                f"{namespace}/s{index}",
                Service(
                    ObjectMeta(namespace, f"s{index}", annotations=NLB_ANNOTATIONS),
                    "LoadBalancer",
                    {"app": app},
                    (ServicePort("http", 80, 8080),),
                ),
            )
        world.stores["pods"].upsert(f"{namespace}/api-1", pod("api-1", app="api", namespace=namespace))
    evaluator = IncrementalEvaluator(ControllerConfig(), ControllerLocation(), include_controller=True)
    evaluator.evaluate(build_snapshot(world.stores, 1), None)
    for store in world.stores.values():
        store.take_changes()
    world.stores["pods"].upsert("a/web-1", pod("web-1", app="web", namespace="a"))
    evaluator.evaluate(build_snapshot(world.stores, 2), {n: s.take_changes() for n, s in world.stores.items()})
    # s0 and s2 select it; s3 (app=cache) matches nothing, so its near-miss message may change; s1 passes.
    assert evaluator.last_services_evaluated == {"a/s0", "a/s2", "a/s3"}
