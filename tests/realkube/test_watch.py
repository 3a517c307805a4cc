"""lbdoctor's list-then-watch (exporter/kube/watch.py) against the real API server: bookmarks, relisting
after 410 Gone forced by compacting etcd, and pagination with limit/continue over 5,000 pods.

In-process reflectors with an admin kubeconfig: what is proven is the API server's answers, which the
fake API server only imitates. (The chart's processes meet restarts and 401s in test_faults.py.)
The 5,000 pods stay until the session ends: this module runs last (tests/conftest.py orders it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from exporter.kube import resources
from exporter.kube.client import ApiError, KubeClient
from exporter.kube.store import Store
from exporter.kube.watch import Reflector, ResourceGone
from tests.realkube.cluster import UNCACHED, RealCluster


class Telemetry:
    def __init__(self) -> None:
        self.restarts: list[str] = []
        self.errors: list[tuple[str, str]] = []

    def watch_started(self, resource: str) -> None:
        pass

    def watch_restarted(self, resource: str, reason: str) -> None:
        self.restarts.append(reason)

    def error(self, component: str, kind: str) -> None:
        self.errors.append((component, kind))


class CountingClient(KubeClient):
    """The real client, noting the query of every GET (to see the pages)."""

    calls: list[dict[str, str]]

    async def get(self, path: str, query: Mapping[str, str] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        self.calls.append(dict(query or {}))
        return await super().get(path, query, timeout)


@pytest.fixture(name="client")
async def _client(real: RealCluster) -> AsyncIterator[CountingClient]:
    client = await CountingClient.connect(str(real.admin_kubeconfig))
    client.calls = []
    yield client
    await client.close()


def ingress_class(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name},
        "spec": {"controller": "ingress.k8s.aws/alb"},
    }


async def test_bookmarks_move_the_resume_point_past_other_nodes_pods(real: RealCluster, client: CountingClient) -> None:
    """A node agent watches its own node's pods: changes on other nodes send it no event, but the API
    server's bookmarks move its resourceVersion on, so a resumed watch does not start from an old one."""
    real.admin.namespace("marks")
    types: list[str] = []

    class Recording(Reflector):
        def _apply(self, event: Any, version: str) -> str:
            types.append(str(event.get("type")))
            return super()._apply(event, version)

    store = Store("pods", asyncio.Event())
    # A short session (5-10 s): the API server sends a bookmark 2 s before its deadline (else every minute).
    reflector = Recording(
        client,
        resources.PODS,
        store,
        Telemetry(),
        namespace="marks",
        field_selector="spec.nodeName=here",
        watch_timeout=3,
    )
    listed = await reflector.list_once()
    session = asyncio.create_task(reflector.watch_once(listed))
    await asyncio.sleep(0.5)
    for number in range(3):  # pods of another node, while it watches: not this watch's business
        real.admin.create("/api/v1/namespaces/marks/pods", bulk_pod(f"elsewhere-{number}", node="there"))
    resumed = await session
    assert "BOOKMARK" in types and not set(types) - {"BOOKMARK"}
    assert int(resumed) > int(listed) and len(store) == 0


def bulk_pod(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bulk"}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "c:1"}]},
    }


async def test_a_watch_resumed_after_etcd_compaction_relists(real: RealCluster, client: CountingClient) -> None:
    """IngressClasses are served without the watch cache here (--watch-cache-sizes), so a watch resumes
    from etcd itself, which answers 410 Gone once the revision is compacted."""
    assert UNCACHED.startswith("ingressclasses")
    telemetry = Telemetry()
    store = Store("ingressclasses", asyncio.Event())
    reflector = Reflector(
        client, resources.INGRESS_CLASSES, store, telemetry, backoff=(0.05,), watch_timeout=5, inactivity_timeout=10
    )
    listed = await reflector.list_once()
    real.admin.apply(ingress_class("changed-after-the-list"))
    real.admin.namespace("compacted")  # a later write: compacting at it drops the revision the watch needs
    compacted = real.compact()
    assert compacted > int(listed) + 1
    with pytest.raises((ResourceGone, ApiError)) as gone:
        await reflector.watch_once(listed)
    assert isinstance(gone.value, ResourceGone) or gone.value.status == 410
    # The loop lists again, and carries on watching from the new list.
    task = asyncio.create_task(reflector.run())
    try:
        await _eventually(lambda: "changed-after-the-list" in keys(store))
        real.admin.apply(ingress_class("after-the-relist"))
        await _eventually(lambda: "after-the-relist" in keys(store))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not telemetry.errors


async def test_5000_pods_are_listed_in_pages(real: RealCluster, client: CountingClient) -> None:
    real.admin.namespace("bulk")

    def create(start: int) -> None:
        for number in range(start, 5000, 8):
            real.admin.create("/api/v1/namespaces/bulk/pods", bulk_pod(f"p-{number:04d}", node="bulk-node"))

    with ThreadPoolExecutor(8) as pool:
        await asyncio.gather(*(asyncio.get_running_loop().run_in_executor(pool, create, n) for n in range(8)))
    store = Store("pods", asyncio.Event())
    reflector = Reflector(client, resources.PODS, store, Telemetry(), namespace="bulk", page_size=1000)
    await reflector.list_once()
    assert len(store) == 5000 and "bulk/p-4999" in keys(store)
    pages = [q for q in client.calls if q.get("limit") == "1000"]
    assert len(pages) == 5 and [("continue" in q) for q in pages] == [False, True, True, True, True]


def keys(store: Store) -> set[str]:
    return {item.meta.key for item in store.values()}


async def _eventually(condition: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
