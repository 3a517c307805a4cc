"""Least privilege on the node: the node agent runs as an unprivileged user with no capabilities and reads
kube-proxy's rules from what the privileged sidecar (``lbdoctor dump-rules``, NET_ADMIN/NET_RAW) dumps
into a shared directory. A dead sidecar becomes a finding, never silently old rules."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from exporter.fakeapi import FakeApiServer
from tests.conftest import next_ip, require_tool
from tests.dataplane.conftest import Netns, need_root
from tests.dataplane.generator import NODE, OTHER_NODE, Ep, Svc, iptables_restore, kubelet_hint
from tests.dataplane.test_node_agent import cluster_objects
from tests.faults.running import eventually, results
from tests.servers import Server, respond

pytestmark = [pytest.mark.faults, pytest.mark.root, pytest.mark.slow]
NOBODY = 65534


@pytest.fixture(name="netns")
def _netns() -> Iterator[Netns]:
    import subprocess

    need_root()
    name = f"lbd-lp-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    try:
        yield Netns(name)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture(name="shared")
def _shared() -> Iterator[Path]:
    """The directory both containers mount (an emptyDir: writable by both)."""
    path = Path(tempfile.mkdtemp(prefix="lbdoctor-rules-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _request(shared: Path) -> tuple[Any, int]:
    return json.loads((shared / "request.json").read_text()), os.stat(shared / "request.json").st_uid


def _kubeconfig(api: FakeApiServer, shared: Path) -> Path:
    path = api.write_kubeconfig(shared / "kubeconfig")
    path.chmod(0o644)  # readable by the unprivileged agent
    return path


@asynccontextmanager
async def process(*argv: str, env: dict[str, str] | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
    started = await asyncio.create_subprocess_exec(
        *argv, env={**os.environ, **(env or {})}, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield started
    finally:
        if started.returncode is None:
            started.send_signal(signal.SIGTERM)
            await asyncio.wait_for(started.wait(), 20)


@pytest.mark.timeout(120)
async def test_the_unprivileged_agent_compares_the_sidecars_dump_and_reports_it_stale(
    api: FakeApiServer, netns: Netns, shared: Path
) -> None:
    setpriv = require_tool("setpriv")
    node_ip, pod_ip = next_ip(), next_ip()
    async with Server(node_ip, respond(200)) as node_port, Server(pod_ip, respond(200)) as pod:
        for obj in cluster_objects(node_ip, node_port.port, pod_ip, pod.port):
            api.state.apply(obj)
        rules = Svc(
            "web",
            "172.20.0.10",
            (Ep(pod_ip, pod="web-1"), Ep("10.244.2.7", node=OTHER_NODE)),
            target_port=pod.port,
            node_port=node_port.port,
            load_balancer=True,
            programmed=("10.244.2.7",),  # this node's kube-proxy lost the local pod
        )
        netns.restore(kubelet_hint(), "nft")
        netns.restore(iptables_restore([rules]), "nft")
        kubeconfig = await asyncio.to_thread(_kubeconfig, api, shared)
        sidecar_argv = [sys.executable, "-m", "exporter", "dump-rules", "--dir", str(shared), "--interval", "1"]
        sidecar_argv += ["--timeout", "5", "--command-prefix", shlex.join(netns.prefix)]
        # The agent: user nobody, no capabilities at all (bounding set, ambient, inheritable), and no
        # way to gain any: it could not run iptables-save itself.
        agent_argv = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        agent_argv += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
        agent_argv += [sys.executable, "-m", "exporter", "run", "--role", "node", "--node-name", NODE]
        agent_argv += ["--kubeconfig", str(kubeconfig), "--listen", "127.0.0.1:0", "--log-format", "json"]
        environment = {
            "LBDOCTOR_KUBE_PROXY_RULES_DIR": str(shared),
            "LBDOCTOR_KUBE_PROXY_INTERVAL_SECONDS": "5",
            "LBDOCTOR_KUBE_PROXY_GRACE_SECONDS": "0",
            "LBDOCTOR_KUBE_PROXY_TIMEOUT_SECONDS": "1",
            "LBDOCTOR_KUBE_PROXY_HEALTHZ_URL": "",
            "LBDOCTOR_KUBE_PROXY_METRICS_URL": "",
            "LBDOCTOR_PUBLISH_INTERVAL_SECONDS": "0.1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": str(shared),
        }
        async with process(*sidecar_argv) as sidecar:
            listen = await _agent(agent_argv, environment)
            async with listen as base:

                async def finding() -> dict[str, Any] | None:
                    document = await results(base)
                    return next((r for r in document["results"] if r["check"] == "kube_proxy"), None)

                async def compared() -> bool:
                    found = await finding()
                    return found is not None and found["reason"] == "EndpointRulesMissing"

                await eventually(compared, 40)
                request, owner = await asyncio.to_thread(_request, shared)
                assert request == {"mode": "auto", "families": ["IPv4"], "proxy_mode": None}
                assert owner == NOBODY  # written by the agent itself
                sidecar.send_signal(signal.SIGKILL)  # the sidecar dies; its last dump stays behind
                await sidecar.wait()

                async def stale() -> bool:
                    found = await finding()
                    return found is not None and found["reason"] == "KubeProxyRulesUnreadable"

                took = await eventually(stale, 30)
                print(f"FIGURE dead-sidecar: reported {took:.1f} s after the sidecar was killed")
                found = await finding()
                assert found is not None and found["status"] == "unknown"
                assert "s old" in found["message"] and "kube-proxy-rules" in found["remedy"]


async def _agent(argv: list[str], environment: dict[str, str]) -> Any:
    @asynccontextmanager
    async def started() -> AsyncIterator[str]:
        agent = await asyncio.create_subprocess_exec(
            *argv, env={**os.environ, **environment}, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
        )
        assert agent.stderr is not None
        try:
            while True:
                line = (await asyncio.wait_for(agent.stderr.readline(), 30)).decode()
                assert line, "the agent exited"
                if '"listen": "' in line:
                    base = "http://" + line.split('"listen": "')[1].split('"')[0]
                    break
            drain = asyncio.create_task(_drain(agent.stderr))
            yield base
            drain.cancel()
        finally:
            if agent.returncode is None:
                agent.send_signal(signal.SIGTERM)
                await asyncio.wait_for(agent.wait(), 20)

    return started()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass
