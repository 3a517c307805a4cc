"""End to end on one node: the daemon against the fake API server, this node's rules in a real network
namespace, a stand-in kube-proxy on loopback, and an instance-target NLB probed through the node path."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter import daemon
from exporter.fakeapi import FakeApiServer
from exporter.settings import Settings
from tests.conftest import next_ip, require_tool
from tests.dataplane.conftest import Netns
from tests.dataplane.fake_kube_proxy import FakeKubeProxy
from tests.dataplane.generator import NODE, OTHER_NODE, Ep, Svc, iptables_restore, kubelet_hint
from tests.servers import Server, respond

pytestmark = [pytest.mark.root, pytest.mark.slow]
NLB = "service.beta.kubernetes.io/aws-load-balancer-"


def cluster_objects(node_ip: str, node_port: int, pod_ip: str, pod_port: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE, "labels": {"topology.kubernetes.io/zone": "eu-west-1a"}},
            "status": {
                "addresses": [{"type": "InternalIP", "address": node_ip}],
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "web",
                "namespace": "shop",
                "annotations": {
                    NLB + "type": "external",
                    NLB + "nlb-target-type": "instance",
                    NLB + "healthcheck-interval": "5",
                    NLB + "healthcheck-timeout": "2",
                    NLB + "healthcheck-healthy-threshold": "2",
                },
            },
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": "web"},
                "clusterIP": "172.20.0.10",
                "clusterIPs": ["172.20.0.10"],
                "externalTrafficPolicy": "Cluster",
                "ports": [
                    {"name": "http", "port": 80, "targetPort": pod_port, "protocol": "TCP", "nodePort": node_port}
                ],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-x1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": pod_port, "protocol": "TCP"}],
            "endpoints": [
                {
                    "addresses": [pod_ip],
                    "conditions": {"ready": True},
                    "nodeName": NODE,
                    "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop"},
                },
                {"addresses": ["10.244.2.7"], "conditions": {"ready": True}, "nodeName": OTHER_NODE},
            ],
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"nodeName": NODE, "containers": [{"name": "app", "ports": [{"containerPort": pod_port}]}]},
            "status": {
                "phase": "Running",
                "podIP": pod_ip,
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0}],
            },
        },
    ]


async def get(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as response:
        return await response.text()


@pytest.mark.timeout(90)
async def test_the_agent_reports_this_nodes_stale_rules_and_probes_the_node_path(
    api: FakeApiServer, netns: Netns, tmp_path: Path
) -> None:
    node_ip, pod_ip = next_ip(), next_ip()
    async with (
        Server(node_ip, respond(200)) as node_port_server,
        Server(pod_ip, respond(200)) as pod_server,
        FakeKubeProxy() as proxy,
    ):
        for obj in cluster_objects(node_ip, node_port_server.port, pod_ip, pod_server.port):
            api.state.apply(obj)
        # kube-proxy on this node lost the local pod: only the other node's endpoint is programmed.
        rules = Svc(
            "web",
            "172.20.0.10",
            (Ep(pod_ip, pod="web-1"), Ep("10.244.2.7", node=OTHER_NODE)),
            target_port=pod_server.port,
            node_port=node_port_server.port,
            load_balancer=True,
            programmed=("10.244.2.7",),
        )
        netns.restore(kubelet_hint(), "nft")
        netns.restore(iptables_restore([rules]), "nft")
        settings = Settings(
            role="node",
            node_name=NODE,
            kubeconfig=str(api.write_kubeconfig(tmp_path / "kubeconfig")),
            listen="127.0.0.1:0",
            publish_interval_seconds=0.05,
            kube_proxy_grace_seconds=0,
            kube_proxy_command_prefix=shlex.join(netns.prefix),
            kube_proxy_healthz_url=proxy.healthz_url,
            kube_proxy_metrics_url=proxy.metrics_url,
        )
        stop = asyncio.Event()
        bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        run = asyncio.create_task(daemon.run(settings, stop=stop, on_ready=bound.set_result))
        try:
            base = f"http://127.0.0.1:{await bound}"
            async with aiohttp.ClientSession() as session:
                document: dict[str, Any] = {}
                for _ in range(200):
                    async with session.get(f"{base}/api/v1/results") as response:
                        document = await response.json()
                    node_path = [t for t in document["targets"] if t["pod"] == "" and t["last_probe"]]
                    failing = [r for r in document["results"] if r["check"] == "kube_proxy" and r["status"] == "fail"]
                    if node_path and failing:
                        break
                    await asyncio.sleep(0.25)
                metrics = await get(session, f"{base}/metrics")
                page = await get(session, f"{base}/")
        finally:
            stop.set()
            assert await run == 0

    [failing] = [r for r in document["results"] if r["check"] == "kube_proxy" and r["status"] == "fail"]
    assert failing["reason"] == "EndpointRulesMissing"
    assert failing["object"] == {"kind": "Service", "namespace": "shop", "name": "web"}
    assert failing["target"] == {"pod": "web-1", "ip": pod_ip, "port": pod_server.port}
    assert "rollout restart daemonset/kube-proxy" in failing["remedy"]
    [node_path] = [t for t in document["targets"] if t["pod"] == ""]
    assert (node_path["ip"], node_path["port"], node_path["protocol"]) == (node_ip, node_port_server.port, "TCP")
    assert node_path["last_probe"]["success"] is True
    labels = f'node="{NODE}",namespace="shop",service="web"'
    assert f"lbdoctor_kube_proxy_rules_missing{{{labels}}} 1" in metrics
    assert f"lbdoctor_kube_proxy_rules_stale{{{labels}}} 0" in metrics
    assert f'lbdoctor_kube_proxy_healthy{{node="{NODE}"}} 1' in metrics
    assert f'lbdoctor_kube_proxy_sync_lag_seconds{{node="{NODE}"}} 0' in metrics
    assert (
        f'lbdoctor_probe_success{{namespace="shop",service="web",pod="",node="{NODE}",lb="nlb",'
        f'port="{node_port_server.port}",path="",owner="service/web"}} 1'
    ) in metrics
    assert 'data-reason="EndpointRulesMissing"' in page
    promtool = require_tool("promtool")
    checked = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=metrics, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
