"""``lbdoctor diagnose`` reads the node agents' probes from lbdoctor's cluster role through the real API server's
service proxy, with the user's own credentials and RBAC.

The real API server proxies to an address of the Service's Endpoints that belongs to a pod, and refuses
loopback (and link-local) addresses there. So this test runs its own etcd and kube-apiserver in a network
namespace it creates, whose lo also carries TEST-NET-1 addresses (192.0.2.0/24): the cluster role listens on
one, the apps' pods on others, and the API server dials them there; the host's network never sees any of it.
Fixed ports are fine inside that namespace, which is this test's alone. Needs root (``ip netns``).

- a user with only the built-in ``view`` ClusterRole: ``view`` has no ``services/proxy``, so diagnose says
  so in one line and the probe step says what it needs;
- a user with ``view`` and a Role granting ``get`` on ``services/proxy`` for the cluster role's Service only
  (``resourceNames``: the ``SCHEME:NAME:PORT`` diagnose asks for): the node agent's probe failure shows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.realkube.apps import deploy
from tests.realkube.cluster import RealCluster, kube_binaries, running
from tests.realkube.conftest import wait_for
from tests.realkube.pods import Node, register_node

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_IP, AGENT_IP = "192.0.2.250", "192.0.2.251"
CLUSTER_PORT, AGENT_PORT = 9851, 9850
NODE = Node("proxy-node-1", AGENT_IP)
LABELS = {
    "app.kubernetes.io/name": "lbdoctor",
    "app.kubernetes.io/instance": "lbdoctor",
    "app.kubernetes.io/component": "cluster",
}


def _ip(netns: str, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module", name="isolated")
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RealCluster, str]]:
    """etcd and kube-apiserver in a network namespace of their own, lo up with TEST-NET-1 addresses."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the API server's service proxy to a test-made address needs a network namespace (root, ip)")
    binaries, why = kube_binaries()
    if binaries is None:
        pytest.skip(why)
    netns = f"lbdoctor-proxy-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True)
    try:
        _ip(netns, "link", "set", "lo", "up")
        with running(binaries, tmp_path_factory.mktemp("proxied"), netns) as cluster:
            yield cluster, netns
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)


def _status(cluster: RealCluster, namespace: str, name: str, ip: str) -> None:
    """What the kubelet would report: Running, Ready, the pod's IP."""
    now = "2026-01-01T00:00:00Z"
    cluster.admin.patch(
        f"/api/v1/namespaces/{namespace}/pods/{name}/status",
        {
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "hostIP": ip,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                "containerStatuses": [
                    {
                        "name": "lbdoctor",
                        "ready": True,
                        "restartCount": 0,
                        "image": "lbdoctor:1",
                        "imageID": "",
                        "state": {"running": {"startedAt": now}},
                    }
                ],
            }
        },
    )


def _install_cluster_role(cluster: RealCluster) -> None:
    """The cluster role's pod, Service (the chart's labels and port name) and Endpoints (which the endpoints
    controller would write; nothing else runs here), at an address the API server will dial."""
    admin = cluster.admin
    admin.namespace("lbdoctor")
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "lbdoctor-cluster-0", "namespace": "lbdoctor", "labels": LABELS},
            "spec": {"nodeName": NODE.name, "containers": [{"name": "lbdoctor", "image": "lbdoctor:1"}]},
        }
    )
    _status(cluster, "lbdoctor", "lbdoctor-cluster-0", CLUSTER_IP)
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "lbdoctor-cluster", "namespace": "lbdoctor", "labels": LABELS},
            "spec": {
                "selector": LABELS,
                "ports": [{"name": "http-metrics", "port": 9850, "targetPort": "http-metrics", "protocol": "TCP"}],
            },
        }
    )
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "lbdoctor-cluster", "namespace": "lbdoctor", "labels": LABELS},
            "subsets": [
                {
                    "addresses": [
                        {"ip": CLUSTER_IP, "targetRef": {"kind": "Pod", "namespace": "lbdoctor", "name": "lbdoctor-cluster-0"}}
                    ],
                    "ports": [{"name": "http-metrics", "port": CLUSTER_PORT, "protocol": "TCP"}],
                }
            ],
        }
    )


def _user(cluster: RealCluster, user: str, *, proxy: bool) -> Path:
    admin = cluster.admin
    admin.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{user}-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }
    )
    if proxy:  # what docs/diagnose.md tells an admin to grant: this Service's proxy, nothing else
        admin.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "lbdoctor-diagnose", "namespace": "lbdoctor"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["services/proxy"],
                        "resourceNames": ["http:lbdoctor-cluster:http-metrics"],
                        "verbs": ["get"],
                    }
                ],
            }
        )
        admin.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": f"{user}-diagnose", "namespace": "lbdoctor"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lbdoctor-diagnose"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            }
        )
    return cluster.user_kubeconfig(user)


def _lbdoctor(netns: str, *args: str, log: Path | None = None, **settings: str) -> subprocess.Popen[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("LBDOCTOR_")}
    environment.pop("KUBECONFIG", None)
    environment.update({f"LBDOCTOR_{key.upper()}": value for key, value in settings.items()}, PYTHONUNBUFFERED="1")
    output = log.open("w") if log is not None else subprocess.PIPE
    return subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "exporter", *args],
        cwd=ROOT,
        env=environment,
        stdout=output,
        stderr=subprocess.STDOUT if log is not None else subprocess.PIPE,
        text=True,
    )


def _diagnose(netns: str, kubeconfig: Path, *more: str) -> subprocess.CompletedProcess[str]:
    process = _lbdoctor(netns, "diagnose", "--kubeconfig", str(kubeconfig), "-n", "proxied", "--no-aws", *more)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _proxied(cluster: RealCluster, path: str) -> Any:
    return cluster.admin.get(f"/api/v1/namespaces/lbdoctor/services/http:lbdoctor-cluster:http-metrics/proxy{path}")


def test_diagnose_reads_the_probes_through_the_real_service_proxy(
    isolated: tuple[RealCluster, str], tmp_path: Path
) -> None:
    cluster, netns = isolated
    admin = cluster.admin
    register_node(admin, NODE)
    refused = deploy(admin, "proxied", "orders", NODE)  # nothing listens on its address: refused
    for ip in (CLUSTER_IP, AGENT_IP, refused.ip):
        _ip(netns, "addr", "add", f"{ip}/32", "dev", "lo")
    _install_cluster_role(cluster)
    kubeconfig = str(cluster.admin_kubeconfig)
    common = ("--kubeconfig", kubeconfig, "--log-format", "json")
    roles = [
        _lbdoctor(netns, "run", "--role", "node", "--node-name", NODE.name, "--listen", f"{AGENT_IP}:{AGENT_PORT}",
                  *common, log=tmp_path / "node.log", kube_proxy_mode="off", kube_proxy_healthz_url="",
                  kube_proxy_metrics_url=""),
        _lbdoctor(netns, "run", "--role", "cluster", "--listen", f"{CLUSTER_IP}:{CLUSTER_PORT}", *common,
                  log=tmp_path / "cluster.log", leader_election="false", node_agent_interval_seconds="1",
                  node_agent_urls=f"http://{AGENT_IP}:{AGENT_PORT}"),
    ]  # fmt: skip
    try:
        for name, role in zip(("node", "cluster"), roles, strict=True):
            time.sleep(0.1)
            assert role.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]

        def shows_the_refused_probe() -> bool:
            document = _proxied(cluster, "/api/v1/probes?" + urllib.parse.urlencode({"namespace": "proxied"}))
            return any(r["reason"] == "ConnectionRefused" for r in document["results"])

        wait_for(shows_the_refused_probe, "the cluster role to show the node agent's refused probe", timeout=60)

        # Only view: no services/proxy. Said in one line, and the probe step says what it needs.
        viewer = _user(cluster, "jane@example.com", proxy=False)
        seen = _diagnose(netns, viewer, "-o", "json")
        assert "Traceback" not in seen.stderr, seen.stderr
        report = json.loads(seen.stdout)
        assert report["probes"]["source"] == []
        assert report["probes"]["error"].startswith(
            "RBAC does not let you read lbdoctor's cluster role lbdoctor/lbdoctor-cluster through the API server: "
            "ask for get on services/proxy in namespace lbdoctor"
        ), report["probes"]["error"]
        assert not [r for r in report["results"] if r["check"] == "health_probe"]
        table = " ".join(_diagnose(netns, viewer).stdout.split())
        assert "health_probe │ not run │ needs lbdoctor's cluster role" in table, table[:3000]

        # view and get on this Service's proxy: the probes, from the node agent, through the real API server.
        reader = _user(cluster, "joe@example.com", proxy=True)
        seen = _diagnose(netns, reader, "-o", "json")
        assert "Traceback" not in seen.stderr, seen.stderr
        report = json.loads(seen.stdout)
        assert report["probes"]["error"] is None, report["probes"]
        assert report["probes"]["source"] == [{"namespace": "lbdoctor", "service": "lbdoctor-cluster", "via": "service proxy"}]
        [agent] = report["probes"]["agents"]
        assert agent["node"] == NODE.name and agent["state"] == "ok" and 0 <= agent["age_seconds"] < 30
        probe = next(r for r in report["results"] if r["check"] == "health_probe" and r["status"] != "ok")
        assert (probe["reason"], probe["object"]["name"], probe["node"]) == ("ConnectionRefused", "orders", NODE.name)
        assert seen.returncode == 1
    finally:
        for role in roles:
            role.terminate()
        for role in roles:
            try:
                role.wait(20)
            except subprocess.TimeoutExpired:
                role.kill()
