"""Fixtures of the integration suite: one real kube-apiserver and etcd for the whole session.

Every test here is marked ``realkube`` and ``slow``; they run last (tests/conftest.py orders them). They
skip, saying why, when kube-apiserver and etcd are not built (no Go: scripts/kube-binaries needs it),
and those that start the chart's pods skip when not root (a private mount namespace and setpriv).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import next_ip
from tests.kubelet import PodTemplate, pod_templates
from tests.realkube.cluster import RealCluster, kube_binaries, running
from tests.realkube.pods import ClusterAccess, Node, Pod, register_node, start_pod

HERE = Path(__file__).resolve().parent
CRD = HERE / "manifests" / "targetgroupbindings.elbv2.k8s.aws.yaml"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.realkube)
            item.add_marker(pytest.mark.slow)


def install_crd(cluster: RealCluster) -> None:
    cluster.admin.apply(yaml.safe_load(CRD.read_text()))
    wait_for(lambda: cluster.admin.get("/apis/elbv2.k8s.aws/v1beta1"), "the TargetGroupBinding CRD to be served")


def wait_for(probe: Any, what: str, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll ``probe`` until it returns something truthy without raising; fail naming ``what``."""
    import time

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
            last = value
        except Exception as error:  # the probe's own failure is the thing to wait out
            last = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="session", name="real")
def _real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    binaries, why = kube_binaries()
    if binaries is None:
        if "go is not installed" in why or "not built yet" in why:
            pytest.skip(why)
        pytest.fail(why)  # Go is there and the build failed: that must not pass as a skip
    with running(binaries, tmp_path_factory.mktemp("realkube")) as cluster:
        install_crd(cluster)
        yield cluster


# ---- the chart, installed as helm would, and its pods started as the kubelet would ---------------------


@dataclass
class Release:
    name: str
    namespace: str
    docs: list[dict[str, Any]]
    node: Node
    cluster: ClusterAccess
    workdir: Path
    pods: list[Pod] = field(default_factory=list)
    _index: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def template(self, kind: str) -> PodTemplate:
        (found,) = [t for t in pod_templates(self.docs) if t.kind == kind]
        return found

    def doc(self, kind: str, suffix: str) -> dict[str, Any]:
        (found,) = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
        return found

    def new_node(self) -> Node:
        """Another node: a host-network node agent holds its node's port, as on a real node."""
        node = Node(f"{self.name}-node-{next(self._index)}", next_ip())
        register_node(self.cluster.admin, node)
        return node

    def start(
        self,
        kind: str,
        *,
        env: dict[str, str] | None = None,
        hosts: dict[str, str] | None = None,
        node: Node | None = None,
        service_links: bool | None = None,
    ) -> Pod:
        if os.geteuid() != 0:
            pytest.skip("starting the chart's pods as the kubelet does needs root (unshare --mount, setpriv)")
        template = self.template(kind)
        if service_links is not None:  # as if the chart did not say enableServiceLinks: false
            template = dataclasses.replace(template, spec={**template.spec, "enableServiceLinks": service_links})
        # No cluster DNS and no kube-proxy: the cluster role's Service name leads to its first replica
        # started, as kube-proxy would pick one of its endpoints.
        replicas = [p for p in self.pods if p.template.kind == "Deployment"]
        service = f"{self.doc('Service', '-cluster')['metadata']['name']}.{self.namespace}.svc"
        hosts = {service: replicas[0].ip, **(hosts or {})} if replicas else hosts
        pod = start_pod(
            self.cluster,
            template,
            index=next(self._index),
            node=node or self.node,
            pod_ip=next_ip(),
            workdir=self.workdir,
            env=env,
            hosts=hosts,
        )
        self.pods.append(pod)
        return pod

    def stop_all(self) -> None:
        for pod in self.pods:
            pod.stop()
            self.cluster.admin.delete(f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}")
        self.pods.clear()


def install(
    cluster: RealCluster,
    name: str,
    namespace: str,
    workdir: Path,
    sets: tuple[str, ...] = (),
    values: tuple[Path, ...] = (),
) -> Release:
    """Render the chart with the real helm and create what it renders (namespace first), as ``helm
    install`` does; no controller acts on the Deployment and DaemonSet, the tests start their pods."""
    from tests.ship.test_helm import render

    docs = render(*values, release=name, namespace=namespace, sets=sets)
    cluster.admin.namespace(namespace)
    order = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service"]
    for doc in sorted(docs, key=lambda d: order.index(d["kind"]) if d["kind"] in order else len(order)):
        cluster.admin.apply(doc)
    node = Node(f"{name}-node-1", next_ip())
    register_node(cluster.admin, node)
    directory = workdir / name
    directory.mkdir(parents=True, exist_ok=True)
    return Release(name, namespace, docs, node, cluster, directory)


@pytest.fixture(scope="session", name="workdir")
def _workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pods")
    path.chmod(0o755)
    return path
