"""Shared fixtures: distinct loopback "pod IPs", the fake API server with the real kubernetes client."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from exporter.fakeapi import ClusterState, FakeApiServer
from exporter.kube.client import KubeClient

_addresses = itertools.count(1)


def next_ip() -> str:
    """A loopback address no other test in this run uses (each is its own "pod IP")."""
    n = next(_addresses) + 256 * (os.getpid() % 200)
    return f"127.{100 + (n // 65536) % 100}.{(n // 256) % 256}.{n % 256 or 1}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The integration suite against a real API server (tests/realkube) runs last. scripts/test waits for
    its build of kube-apiserver and etcd before pytest starts; when a build is still running anyway (the
    folder KUBE_BUILD_STATE names has no ``rc`` yet), the first realkube test waits for it, so it gets
    the build's time limit instead of a test's."""
    realkube = Path(__file__).resolve().parent / "realkube"
    items.sort(key=lambda item: realkube in Path(str(item.path)).parents)
    build = os.environ.get("KUBE_BUILD_STATE")
    first = next((item for item in items if realkube in Path(str(item.path)).parents), None)
    if first is not None and build and not (Path(build) / "rc").exists():
        first.add_marker(pytest.mark.timeout(3600))


@pytest.fixture(name="ip")
def _ip() -> str:
    return next_ip()


@pytest.fixture(name="output_dir")
def _output_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A folder for artefacts a person may want to look at after the run (screenshots, dumps)."""
    path = Path(__file__).resolve().parent.parent / "test-output" / request.node.name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture(name="api")
async def _api() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer(ClusterState(), bookmark_interval=0.2)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(name="kube")
async def _kube(api: FakeApiServer, tmp_path: Path) -> AsyncIterator[KubeClient]:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    client = await KubeClient.connect(str(kubeconfig))
    yield client
    await client.close()


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/test installs it when run as root)")
    return path


@pytest.fixture(autouse=True)
async def _loop_errors_fail_the_test() -> AsyncIterator[None]:
    """Errors asyncio would only log (a future's exception never retrieved, a callback that raised)
    fail the test that caused them."""
    import asyncio
    import gc

    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(previous)
    assert not errors, f"asyncio reported errors: {[str(e.get('message')) for e in errors]}"


@pytest.fixture(autouse=True, scope="session")
def _logs_to_stderr() -> None:
    """Logs go to stderr as in the CLI, so tests reading stdout (diagnose --output json) read only output."""
    from exporter import logs

    logs.configure("console", "info")
