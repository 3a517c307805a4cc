"""A load-balanced application in the real API server: Service, pod and EndpointSlice.

The real API server refuses loopback addresses in EndpointSlices ("may not be in the loopback range"),
so the app's pod has an address of TEST-NET-1 (192.0.2.0/24, never routed) and runs on a node no node
agent of the tests serves: nothing sends it traffic. Probing is proven against loopback servers with
the fake API server (tests/test_probe_*.py, the demo).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from tests.realkube.cluster import Admin
from tests.realkube.pods import Node

_addresses = itertools.count(10)


def test_net_ip() -> str:
    return f"192.0.2.{next(_addresses)}"


@dataclass(frozen=True)
class App:
    namespace: str
    service: str
    pod: str
    ip: str
    port: int


def nlb_service(namespace: str, name: str, port: int, **spec: Any) -> dict[str, Any]:
    """A Service the AWS Load Balancer Controller would give an NLB with IP targets."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip"},
        },
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": "service.k8s.aws/nlb",
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}],
            **spec,
        },
    }


def deploy(admin: Admin, namespace: str, name: str, node: Node, port: int = 8080) -> App:
    """Service, pod (Running and Ready, as a kubelet reports it) and its EndpointSlice (as the
    EndpointSlice controller would write it)."""
    ip = test_net_ip()
    admin.namespace(namespace)
    admin.apply(nlb_service(namespace, name, port))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-1", "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "nodeName": node.name,
            "containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": port, "name": "http"}]}],
        },
    }
    admin.apply(pod)
    now = "2026-01-01T00:00:00Z"
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": now}
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    admin.patch(
        f"/api/v1/namespaces/{namespace}/pods/{name}-1/status",
        {
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "hostIP": node.ip,
                "conditions": conditions,
                "containerStatuses": [
                    {
                        "name": "app",
                        "ready": True,
                        "restartCount": 0,
                        "image": "app:1",
                        "imageID": "",
                        "state": {"running": {"startedAt": now}},
                    }
                ],
            }
        },
    )
    admin.apply(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-abcde",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [
                {
                    "addresses": [ip],
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                    "nodeName": node.name,
                    "targetRef": {"kind": "Pod", "namespace": namespace, "name": f"{name}-1"},
                }
            ],
        }
    )
    return App(namespace, name, f"{name}-1", ip, port)
