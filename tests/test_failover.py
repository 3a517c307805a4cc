"""Two cluster-role processes against one API server: one leads; kill it and the other takes over."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from exporter.demo import cluster
from exporter.fakeapi import FakeApiServer

pytestmark = pytest.mark.slow

LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/lbdoctor-cluster"


async def start_replica(kubeconfig: Path, identity: str) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter",
        "run",
        "--role",
        "cluster",
        "--kubeconfig",
        str(kubeconfig),
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        env={
            **os.environ,
            "POD_NAMESPACE": "kube-system",
            "POD_NAME": identity,
            "LBDOCTOR_LEASE_DURATION_SECONDS": "3",
        },
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
        assert line, f"lbdoctor {identity} exited before it listened (exit {await process.wait()})"
        found = re.search(r'"listen": "([^"]+)"', line)
        if found:
            return process, f"http://{found.group(1)}"


async def results(base: str) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        with urllib.request.urlopen(f"{base}/api/v1/results", timeout=5) as response:
            return dict(json.loads(response.read()))

    return await asyncio.to_thread(fetch)


async def eventually(condition: Any, timeout: float) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not await condition():
        assert loop.time() - started < timeout, "condition not met in time"
        await asyncio.sleep(0.2)
    return loop.time() - started


async def test_standby_takes_over_within_the_lease_duration(api: FakeApiServer, tmp_path: Path) -> None:
    cluster.seed(api.state, "127.78")
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    first, first_url = await start_replica(kubeconfig, "replica-a")
    second, second_url = await start_replica(kubeconfig, "replica-b")
    try:

        async def one_leads() -> bool:
            documents = [await results(first_url), await results(second_url)]
            return sorted(d["standby"] for d in documents) == [False, True] and any(d["results"] for d in documents)

        await eventually(one_leads, 30)
        holder = (await api_get(api, LEASE))["spec"]["holderIdentity"]
        leader, _leader_url, standby_url = (
            (first, first_url, second_url) if holder == "replica-a" else (second, second_url, first_url)
        )
        standby = await results(standby_url)
        assert standby["results"] == []  # the standby publishes no check series
        leader.send_signal(signal.SIGKILL)  # no chance to release the lease
        await leader.wait()

        async def standby_leads() -> bool:
            document = await results(standby_url)
            return not document["standby"] and any(r["reason"] == "NoPodsMatchSelector" for r in document["results"])

        took = await eventually(standby_leads, 15)
        assert took < 3 + 3 + 2  # lease duration, one retry period, one publish round
        lease = await api_get(api, LEASE)
        assert lease["spec"]["holderIdentity"] != holder
        assert lease["spec"]["leaseTransitions"] >= 1
    finally:
        for process in (first, second):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 10)


async def api_get(api: FakeApiServer, path: str) -> dict[str, Any]:
    namespace, name = path.split("/namespaces/")[1].split("/leases/")
    from exporter.fakeapi.state import KINDS_BY_KEY

    return api.state.get(KINDS_BY_KEY["coordination.k8s.io/v1/leases"], namespace, name)


async def test_leader_releases_the_lease_on_sigterm(api: FakeApiServer, tmp_path: Path) -> None:
    cluster.seed(api.state, "127.79")
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    process, url = await start_replica(kubeconfig, "replica-a")

    async def leads() -> bool:
        return not (await results(url))["standby"]

    await eventually(leads, 20)
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 6) == 0
    lease = await api_get(api, LEASE)
    assert lease["spec"]["holderIdentity"] == ""
