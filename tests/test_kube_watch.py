"""List-then-watch against the fake API server, spoken to by the real kubernetes client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from exporter.fakeapi import FakeApiServer, Fault
from exporter.fakeapi.state import KINDS_BY_KEY
from exporter.kube import resources
from exporter.kube.client import ApiError, KubeClient
from exporter.kube.store import Store
from exporter.kube.watch import Reflector

PODS = KINDS_BY_KEY["v1/pods"]


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


def a_pod(name: str, node: str = "node-a") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "podIP": "10.0.0.1"},
    }


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture(name="reflect")
def _reflect(kube: KubeClient):  # type: ignore[no-untyped-def]
    tasks: list[asyncio.Task[None]] = []

    def start(resource: resources.Resource = resources.PODS, **options: object) -> tuple[Store, Telemetry]:
        telemetry = Telemetry()
        store = Store(resource.name, asyncio.Event())
        options.setdefault("backoff", (0.05,))
        reflector = Reflector(kube, resource, store, telemetry, **options)  # type: ignore[arg-type]
        tasks.append(asyncio.create_task(reflector.run()))
        return store, telemetry

    yield start
    for task in tasks:
        task.cancel()


def names(store: Store) -> set[str]:
    return {item.meta.name for item in store.values()}


async def test_list_then_watch_with_node_field_selector(api: FakeApiServer, reflect) -> None:  # type: ignore[no-untyped-def]
    api.state.apply(a_pod("mine"))
    api.state.apply(a_pod("theirs", node="node-b"))
    store, _ = reflect(field_selector="spec.nodeName=node-a")
    await eventually(lambda: store.synced)
    assert names(store) == {"mine"}
    api.state.apply(a_pod("new"))
    api.state.apply(a_pod("elsewhere", node="node-b"))
    api.state.delete(PODS, "shop", "mine")
    await eventually(lambda: names(store) == {"new"})


async def test_paged_list(api: FakeApiServer, reflect) -> None:  # type: ignore[no-untyped-def]
    for index in range(25):
        api.state.apply(a_pod(f"p{index:02d}"))
    store, _ = reflect(page_size=10)
    await eventually(lambda: store.synced)
    assert len(store) == 25
    assert sum("continue=" in path for _, path in api.requests) == 2


async def test_dropped_watch_resumes_without_relisting(api: FakeApiServer, reflect) -> None:  # type: ignore[no-untyped-def]
    store, telemetry = reflect()
    await eventually(lambda: store.synced and api.state.watcher_count == 1)
    assert api.drop_watches() == 1
    api.state.apply(a_pod("a"))
    api.state.apply(a_pod("b"))
    await eventually(lambda: names(store) == {"a", "b"})
    assert "disconnected" in telemetry.restarts
    lists = [path for _, path in api.requests if "watch" not in path]
    assert len(lists) == 1  # resumed from its resourceVersion


async def test_gone_relists(api: FakeApiServer, reflect) -> None:  # type: ignore[no-untyped-def]
    store, telemetry = reflect(watch_timeout=10)
    await eventually(lambda: store.synced and api.state.watcher_count == 1)
    api.drop_watches()
    api.state.apply(a_pod("before"))
    api.state.compact()  # the version the reflector holds is now too old: 410 Gone
    await eventually(lambda: "expired" in telemetry.restarts and names(store) == {"before"})
    api.state.apply(a_pod("after"))
    await eventually(lambda: names(store) == {"before", "after"})
    lists = [path for _, path in api.requests if "watch" not in path]
    assert len(lists) >= 2


async def test_errors_back_off_and_recover(api: FakeApiServer, reflect) -> None:  # type: ignore[no-untyped-def]
    api.inject(Fault(path="/api/v1/pods", watch=False, status=500, times=2))
    api.inject(Fault(path="/api/v1/pods", watch=False, status=429, retry_after=0, times=1))
    api.state.apply(a_pod("a"))
    store, telemetry = reflect()
    await eventually(lambda: store.synced)
    assert telemetry.restarts[:3] == ["http_500", "http_500", "http_429"]
    assert ("kube", "http_500") in telemetry.errors
    assert store.error is None


async def test_absent_crd_is_skipped_cleanly(api: FakeApiServer, reflect) -> None:  # type: ignore[no-untyped-def]
    api.state.disabled_kinds.add("elbv2.k8s.aws/v1beta1/targetgroupbindings")
    store, telemetry = reflect(resources.TARGET_GROUP_BINDINGS)
    await eventually(lambda: store.synced)
    assert store.absent and telemetry.errors == []


async def test_forbidden_is_an_error_with_the_reason(api: FakeApiServer, kube: KubeClient, reflect) -> None:  # type: ignore[no-untyped-def]
    api.forbidden.add("pods")
    with pytest.raises(ApiError) as raised:
        await kube.get("/api/v1/pods")
    assert raised.value.status == 403 and "cannot list" in raised.value.message
    store, telemetry = reflect()
    await eventually(lambda: store.forbidden)
    assert store.synced  # lbdoctor reports what it cannot see rather than waiting forever
    assert store.error is not None and "403" in store.error and "cannot list" in store.error
    assert ("kube", "forbidden") in telemetry.errors


async def test_bookmarks_advance_the_version(api: FakeApiServer, reflect) -> None:  # type: ignore[no-untyped-def]
    store, _ = reflect(watch_timeout=10)
    await eventually(lambda: store.synced)
    await asyncio.sleep(0.5)  # bookmarks every 0.2 s in the fixture
    watches = [path for _, path in api.requests if "watch=true" in path]
    assert watches and "allowWatchBookmarks=true" in watches[0]


async def test_silent_watch_is_reconnected(api: FakeApiServer, reflect) -> None:  # type: ignore[no-untyped-def]
    api.bookmark_interval = 60
    store, telemetry = reflect(inactivity_timeout=0.3)
    await eventually(lambda: store.synced)
    await eventually(lambda: "timeout" in telemetry.restarts, timeout=5)
    api.state.apply(a_pod("late"))
    await eventually(lambda: names(store) == {"late"})


async def test_a_forbidden_crd_that_is_not_installed_is_absent(api: FakeApiServer, reflect) -> None:  # type: ignore[no-untyped-def]
    """RBAC answers 403 before the server looks whether a resource exists; discovery tells a CRD that is not
    installed (absent: nothing to report) from one RBAC hides (forbidden: say so)."""
    api.state.disabled_kinds.add("gateway.networking.k8s.io/v1/httproutes")
    api.forbidden.update({"httproutes", "gateways"})
    absent, quiet = reflect(resources.HTTP_ROUTES)
    hidden, loud = reflect(resources.GATEWAYS)
    await eventually(lambda: absent.synced and hidden.synced)
    assert absent.absent and not absent.forbidden and quiet.errors == []
    assert hidden.forbidden and not hidden.absent and loud.errors == [("kube", "forbidden")]
