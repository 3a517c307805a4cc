"""The fake API server (exporter/fakeapi) behind TLS, shaped like RealCluster for tests/realkube/pods.py:
where Go is missing, the chart's pods still start as the kubelet starts them, against the fake.

It has no RBAC, no ServiceAccounts and no TokenRequest: every token is accepted, and the chart's RBAC
objects are not installed. It runs in a thread of its own (its own event loop), as a server would.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from exporter.fakeapi import ClusterState, FakeApiServer
from tests.realkube.cluster import Admin, Pki

KNOWN_KINDS = {"Namespace", "Service", "Deployment", "DaemonSet", "ConfigMap", "Pod", "Node"}


class FakeAdmin(Admin):
    def namespace(self, name: str) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def apply(self, obj: Mapping[str, Any]) -> Any:
        if obj["kind"] not in KNOWN_KINDS:
            return None  # RBAC, ServiceAccounts, PodDisruptionBudgets…: the fake has none of them
        return super().apply(obj)


class FakeCluster:
    def __init__(self, workdir: Path) -> None:
        self.pki = Pki.create(workdir / "pki")
        serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serving.load_cert_chain(str(self.pki.serving_cert), str(self.pki.serving_key))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.server = FakeApiServer(ClusterState(), ssl_context=serving, bookmark_interval=1.0)
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(30)
        self.port = self.server.port
        self.admin = FakeAdmin("127.0.0.1", self.port, ssl.create_default_context(cafile=str(self.pki.ca)))
        self.admin.namespace("default")
        self.admin.namespace("kube-system")
        self.admin.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default"},
                "spec": {"clusterIP": "10.100.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
            }
        )

    @property
    def ca_path(self) -> Path:
        return self.pki.ca

    def pod_token(self, pod: Mapping[str, Any]) -> str:
        return "fake-token-" + str(pod["metadata"]["name"])

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextmanager
def running(workdir: Path) -> Iterator[FakeCluster]:
    cluster = FakeCluster(workdir)
    try:
        yield cluster
    finally:
        cluster.stop()
