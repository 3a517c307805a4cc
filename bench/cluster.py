"""A fake EKS cluster of N load-balanced pods on one node, for benchmarks of the real daemon.

The pods' IPs are the addresses of a ``TargetFleet`` (127.1.x.y), so the daemon's probes land on
real servers in another process. Services hold ``PODS_PER_SERVICE`` pods each and alternate between
an ALB (Ingress, IP targets) and an NLB with an HTTP health check, both on /healthz every
``interval`` seconds.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.targets import addresses
from exporter.fakeapi import ClusterState, FakeApiServer

NAMESPACE = "bench"
NODE = "ip-10-0-9-9.ec2.internal"
PODS_PER_SERVICE = 10
ALB = "alb.ingress.kubernetes.io/"
NLB = "service.beta.kubernetes.io/aws-load-balancer-"


def objects(count: int, port: int, interval: int = 5) -> Iterator[dict[str, Any]]:
    ips = addresses(count)
    yield {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    yield {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]},
    }
    yield {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "alb"},
        "spec": {"controller": "ingress.k8s.aws/alb"},
    }
    for index, start in enumerate(range(0, count, PODS_PER_SERVICE)):
        name = f"svc-{index:04d}"
        labels = {"app": name}
        pods = [(f"{name}-pod-{n:02d}", ip) for n, ip in enumerate(ips[start : start + PODS_PER_SERVICE])]
        alb = index % 2 == 0
        service_port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}
        annotations: dict[str, str] = {}
        spec: dict[str, Any] = {"selector": labels, "ports": [service_port], "type": "ClusterIP"}
        if not alb:
            spec["type"] = "LoadBalancer"
            service_port["nodePort"] = 30000 + index % 2000
            annotations = {
                NLB + "type": "external",
                NLB + "nlb-target-type": "ip",
                NLB + "healthcheck-protocol": "http",
                NLB + "healthcheck-path": "/healthz",
                NLB + "healthcheck-interval": str(interval),
                NLB + "healthcheck-timeout": "2",
            }
        yield {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations},
            "spec": spec,
        }
        yield {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-abcde",
                "namespace": NAMESPACE,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [
                {
                    "addresses": [ip],
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                    "nodeName": NODE,
                    "targetRef": {"kind": "Pod", "name": pod, "namespace": NAMESPACE},
                }
                for pod, ip in pods
            ],
        }
        if alb:
            yield {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {
                    "name": name,
                    "namespace": NAMESPACE,
                    "annotations": {
                        ALB + "target-type": "ip",
                        ALB + "healthcheck-path": "/healthz",
                        ALB + "healthcheck-interval-seconds": str(interval),
                        ALB + "healthcheck-timeout-seconds": "2",
                    },
                },
                "spec": {
                    "ingressClassName": "alb",
                    "rules": [
                        {
                            "http": {
                                "paths": [
                                    {
                                        "path": "/",
                                        "pathType": "Prefix",
                                        "backend": {"service": {"name": name, "port": {"number": 80}}},
                                    }
                                ]
                            }
                        }
                    ],
                },
            }
        for pod, ip in pods:
            yield {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod, "namespace": NAMESPACE, "labels": labels},
                "spec": {
                    "nodeName": NODE,
                    "containers": [{"name": "app", "image": "example/app:1", "ports": [{"containerPort": port}]}],
                },
                "status": {
                    "phase": "Running",
                    "podIP": ip,
                    "hostIP": "127.0.0.1",
                    "conditions": [
                        {"type": "Ready", "status": "True"},
                        {"type": "ContainersReady", "status": "True"},
                    ],
                    "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0, "state": {"running": {}}}],
                },
            }


async def start_api(count: int, port: int, interval: int = 5) -> tuple[FakeApiServer, Path]:
    """A fake API server in this process holding the cluster; returns it and a kubeconfig for it."""
    state = ClusterState()
    for obj in objects(count, port, interval):
        state.apply(obj)
    api = FakeApiServer(state, bookmark_interval=30.0)
    await api.start()
    workdir = Path(tempfile.mkdtemp(prefix="lbdoctor-bench-"))
    return api, api.write_kubeconfig(workdir / "kubeconfig")


def daemon_command(kubeconfig: Path, listen: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "exporter",
        "run",
        "--role",
        "node",
        "--node-name",
        NODE,
        "--kubeconfig",
        str(kubeconfig),
        "--listen",
        listen,
        "--log-format",
        "json",
        "--log-level",
        "warning",
    ]


def start_daemon(kubeconfig: Path, listen: str) -> subprocess.Popen[bytes]:
    """The real node agent as a child process, quiet (warnings only, to /dev/null)."""
    return subprocess.Popen(daemon_command(kubeconfig, listen), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(8)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def scrape_text(url: str) -> str:
    """GET a URL on loopback with the standard library (no client session kept in this process)."""
    from urllib.request import urlopen

    def get() -> str:
        with urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    return await asyncio.to_thread(get)


def sample_sum(exposition: str, name: str) -> float:
    """The sum of every sample of one metric name in a text exposition."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total
