"""A synthetic EKS-like cluster for benchmarks, served by the fake API server in its own process.

    python -m bench.synthetic --services 10000 --pods 100000 --ingresses 2000 --kubeconfig /tmp/k

Prints ``READY <url>`` once serving; runs until killed. Objects are shaped like a real cluster's:
per namespace, half the Services are NLBs and half sit behind ALB Ingresses, every Service has
EndpointSlices for its pods, a few selectors match nothing, a few pods crash-loop.

``--loopback-node NAME`` gives the pods on that node (and the node itself) loopback addresses, the
ones ``bench.targets`` serves (127.1.x.y, in the order the pods are made), so a node agent for that
node probes real servers and nothing else: every other pod's address is never probed. Services,
their targetPorts and the pods' containerPorts use ``--target-port`` (the target fleet's port).
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.targets import address
from exporter.fakeapi import ClusterState, FakeApiServer

NLB = {
    "service.beta.kubernetes.io/aws-load-balancer-type": "external",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol": "http",
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path": "/healthz",
}


def node_name(index: int) -> str:
    return f"ip-10-0-{index // 250}-{index % 250}"


def objects(
    services: int,
    pods: int,
    ingresses: int,
    namespaces: int,
    nodes: int,
    seed: int = 7,
    loopback_node: str | None = None,
    target_port: int = 8080,
) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    loopback = 0  # pods on the loopback node so far: the next one gets bench.targets.address(loopback)
    per_service = max(pods // services, 1)
    yield {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "alb"},
        "spec": {"controller": "ingress.k8s.aws/alb"},
    }
    for index in range(nodes):
        name = node_name(index)
        internal = "127.0.0.1" if name == loopback_node else f"10.0.{index // 250}.{index % 250}"
        yield {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": internal}],
            },
        }
    alb_services: dict[str, list[str]] = {}
    for index in range(services):
        namespace = f"team-{index % namespaces:03d}"
        name = f"svc-{index:05d}"
        nlb = index % 2 == 0
        broken_selector = rng.random() < 0.01
        labels = {"app": name, "tier": "web"}
        yield {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "annotations": NLB if nlb else {}},
            "spec": {
                "type": "LoadBalancer" if nlb else "ClusterIP",
                "selector": {"app": name + ("-x" if broken_selector else "")},
                "ports": [{"name": "http", "port": 80, "targetPort": target_port, "nodePort": 30000 + index % 2000}],
            },
        }
        if not nlb:
            alb_services.setdefault(namespace, []).append(name)
        endpoints = []
        for replica in range(per_service):
            pod = f"{name}-{replica:02d}"
            ip = f"10.{1 + index // 4000}.{(index // 16) % 250}.{(index % 16) * 15 + replica % 15 + 1}"
            crashing = rng.random() < 0.005
            node = node_name((index + replica) % nodes)
            if node == loopback_node:
                ip = address(loopback)
                loopback += 1
            yield {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod, "namespace": namespace, "labels": labels},
                "spec": {
                    "nodeName": node,
                    "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": target_port}]}],
                },
                "status": {
                    "phase": "Running",
                    "podIP": ip,
                    "conditions": [{"type": "Ready", "status": "False" if crashing else "True"}],
                    "containerStatuses": [
                        {
                            "name": "app",
                            "ready": not crashing,
                            "restartCount": 9 if crashing else 0,
                            "state": {"waiting": {"reason": "CrashLoopBackOff"}} if crashing else {"running": {}},
                        }
                    ],
                },
            }
            if not broken_selector:
                endpoints.append(
                    {
                        "addresses": [ip],
                        "conditions": {"ready": not crashing},
                        "nodeName": node,
                        "targetRef": {"kind": "Pod", "name": pod, "namespace": namespace},
                    }
                )
        yield {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-abcde",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": target_port}],
            "endpoints": endpoints,
        }
    made = 0
    while made < ingresses:
        for namespace, names in sorted(alb_services.items()):
            if made >= ingresses:
                break
            backends = rng.sample(names, k=min(2, len(names)))
            yield {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {
                    "name": f"ing-{made:05d}",
                    "namespace": namespace,
                    "annotations": {
                        "alb.ingress.kubernetes.io/target-type": "ip",
                        "alb.ingress.kubernetes.io/healthcheck-path": "/healthz",
                    },
                },
                "spec": {
                    "ingressClassName": "alb",
                    "rules": [
                        {
                            "http": {
                                "paths": [
                                    {
                                        "path": f"/{b}",
                                        "pathType": "Prefix",
                                        "backend": {"service": {"name": b, "port": {"number": 80}}},
                                    }
                                    for b in backends
                                ]
                            }
                        }
                    ],
                },
            }
            made += 1


async def serve(args: argparse.Namespace) -> None:
    state = ClusterState(history_limit=200_000)
    for obj in objects(
        args.services,
        args.pods,
        args.ingresses,
        args.namespaces,
        args.nodes,
        loopback_node=args.loopback_node,
        target_port=args.target_port,
    ):
        state.apply(obj)
    server = FakeApiServer(state, bookmark_interval=30.0)
    server.warm()  # a real API server answers lists from its watch cache, already serialized
    await server.start()
    server.write_kubeconfig(Path(args.kubeconfig))
    print(f"READY {server.url}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--ingresses", type=int, default=2_000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--loopback-node", default=None, help="a node whose pods get bench.targets' addresses")
    parser.add_argument("--target-port", type=int, default=8080)
    parser.add_argument("--kubeconfig", required=True)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
