"""Trust between the roles, against the real cluster role (in this process, and as its own process for
peak memory): pods that carry the node agents' labels but are not its DaemonSet's are never read, an
agent speaks only for its own node and only for the checks only node agents run, malformed rows are refused
and counted, and a huge answer (a gzip bomb too) is cut off at the cap while it streams. The cluster role
reads its node agents whether or not AWS is configured. The node role reads the cluster role's
target-group settings the same way."""

from __future__ import annotations

import asyncio
import base64
import re
import resource
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exporter import agents as peers
from exporter.fakeapi import FakeApiServer
from exporter.settings import Settings
from tests.conftest import next_ip, require_tool
from tests.faults.running import eventually, get, metric, results, running, start_replica

pytestmark = pytest.mark.faults

NAMESPACE = "lbdoctor"
DAEMONSET = "lbdoctor-node"
MiB = 1024 * 1024


def agent_pod(name: str, namespace: str, ip: str, node: str, owner: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/name": "lbdoctor", "app.kubernetes.io/component": "node"},
    }
    if owner is not None:
        metadata["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": owner, "uid": "1234", "controller": True}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"nodeName": node, "hostNetwork": True},
        "status": {"phase": "Running", "podIP": ip},
    }


def row(node: str, **changes: Any) -> dict[str, Any]:
    base = {
        "namespace": "shop",
        "service": "web",
        "owner": {"kind": "Service", "name": "web"},
        "pod": "web-1",
        "node": node,
        "lb": "nlb",
        "ip": "10.0.10.7",
        "port": 8080,
        "protocol": "HTTP",
        "path": "/healthz",
        "interval_seconds": 10,
        "timeout_seconds": 5,
        "healthy_threshold": 3,
        "unhealthy_threshold": 3,
        "predicted_state": "unhealthy",
        "transitions": 0,
        "ok_streak": 0,
        "fail_streak": 3,
        "last_probe": None,
    }
    return {**base, **changes}


def probes(node: str, targets: list[dict[str, Any]], results: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A node agent's answer at /api/v1/probes (what a forger would send too)."""
    return {"schema": "lbdoctor.probes/v1", "role": "node", "node": node, "ready": True, "targets": targets,
            "results": results or []}  # fmt: skip


class Agent:
    """A node agent's API on one loopback address: answers ``document`` at /api/v1/probes (or, ``legacy``,
    at /api/v1/results only, as an agent older than the compact exchange), or ``huge`` bytes of a JSON array
    that never ends (``gzip``: a gzip bomb of that many bytes); records how often it was asked and how much it
    sent."""

    def __init__(
        self, ip: str, port: int, document: dict[str, Any] | None = None, huge: int = 0, legacy: bool = False,
        gzip: bool = False,
    ) -> None:  # fmt: skip
        self.ip, self.port, self.document, self.huge, self.legacy, self.gzip = (
            ip,
            port,
            document or {},
            huge,
            legacy,
            gzip,
        )
        self.requests = 0
        self.sent = 0
        self._runner: web.AppRunner | None = None

    async def _results(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if not self.huge:
            return web.json_response(self.document)
        if self.gzip:
            return await self._bomb(request)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = b'{"x": "' + b"a" * (MiB - 16) + b'"},'
        await response.write(b'{"schema": "lbdoctor.probes/v1", "role": "node", "targets": [')
        try:
            while self.sent < self.huge:
                await response.write(chunk)
                self.sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the reader hung up: what a cap does
        return response

    async def _bomb(self, request: web.Request) -> web.StreamResponse:
        """``huge`` bytes of JSON once decompressed, a few hundred KiB on the wire."""
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip
        head = packer.compress(b'{"schema": "lbdoctor.probes/v1", "role": "node", "targets": ["')
        block = packer.compress(b"a" * MiB)
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        await response.prepare(request)
        try:
            await response.write(head + block)
            while self.sent < self.huge:
                await response.write(packer.compress(b"a" * MiB) + packer.flush(zlib.Z_SYNC_FLUSH))
                self.sent += MiB
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def __aenter__(self) -> Agent:
        app = web.Application()
        app.router.add_get("/api/v1/results" if self.legacy else "/api/v1/probes", self._results)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.ip, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@asynccontextmanager
async def agents(*specs: dict[str, Any]) -> AsyncIterator[list[Agent]]:
    """One Agent per spec, all on the same port (node agents share node_agent_port), distinct addresses."""
    started: list[Agent] = []
    port = 0
    try:
        for spec in specs:
            agent = await Agent(next_ip(), port, **spec).__aenter__()
            port = agent.port
            started.append(agent)
        yield started
    finally:
        for agent in started:
            await agent.__aexit__()


def cluster_settings(port: int, **more: Any) -> dict[str, Any]:
    """A cluster role without AWS: it reads its node agents all the same."""
    return {
        "role": "cluster",
        "leader_election": False,
        "node_agent_interval_seconds": 1,
        "node_agent_daemonset": DAEMONSET,
        "node_agent_namespace": NAMESPACE,
        "node_agent_port": port,
        **more,
    }


async def test_only_the_daemonsets_own_agents_are_read_each_for_its_own_node(
    api: FakeApiServer, tmp_path: Path
) -> None:
    """Before: any pod in any namespace carrying the agents' labels was read and believed. Now only pods
    of the node agents' DaemonSet in lbdoctor's namespace; and an agent's rows about other nodes, or rows
    that are not valid probe states, are refused and counted."""
    forged = probes("node-a", [row("node-a")])
    real = probes("node-a", [row("node-a"), row("node-b", pod="web-2"), row("node-a", pod="web-3", port=99999)])
    async with agents({"document": real}, {"document": forged}, {"document": forged}, {"document": forged}) as found:
        own, tenant, unowned, other = found
        api.state.apply(agent_pod("lbdoctor-node-abcde", NAMESPACE, own.ip, "node-a", DAEMONSET))
        api.state.apply(agent_pod("lbdoctor-node-fake1", "tenant", tenant.ip, "node-a", DAEMONSET))
        api.state.apply(agent_pod("lbdoctor-node-fake2", NAMESPACE, unowned.ip, "node-a", None))
        api.state.apply(agent_pod("lbdoctor-node-fake3", NAMESPACE, other.ip, "node-a", "something-else"))
        async with running(api, tmp_path, **cluster_settings(own.port)) as base:

            async def rounds() -> bool:
                return own.requests >= 3

            await eventually(rounds, 30)
            _, exposition = await get(f"{base}/metrics")
            document = await results(base)
    print(
        f"FIGURE forged-agents: own agent read {own.requests}x, forged {tenant.requests + unowned.requests + other.requests}x"
    )
    assert (tenant.requests, unowned.requests, other.requests) == (0, 0, 0)
    assert metric(exposition, "lbdoctor_errors_total", component="agents", kind="foreign_node") == own.requests
    assert metric(exposition, "lbdoctor_errors_total", component="agents", kind="invalid_rows") == own.requests
    # What the cluster role shows of node-a is its own agent's one valid row, nothing forged.
    assert [(t["node"], t["pod"]) for t in document["targets"]] == [("node-a", "web-1")]
    assert [(a["node"], a["state"]) for a in document["agents"]] == [("node-a", "ok")]


@pytest.mark.parametrize("legacy", [False, True], ids=["probes", "legacy-results"])
async def test_an_agent_speaking_for_another_node_is_refused(api: FakeApiServer, tmp_path: Path, legacy: bool) -> None:
    liar = probes("node-b", [row("node-b")])
    if legacy:  # an agent older than /api/v1/probes: read at /api/v1/results, under the same rules
        liar = {**liar, "schema": "lbdoctor.results/v1"}
    async with agents({"document": liar, "legacy": legacy}) as [agent]:
        api.state.apply(agent_pod("lbdoctor-node-abcde", NAMESPACE, agent.ip, "node-a", DAEMONSET))
        async with running(api, tmp_path, **cluster_settings(agent.port)) as base:

            async def asked() -> bool:
                return agent.requests >= 2

            await eventually(asked, 30)
            _, exposition = await get(f"{base}/metrics")
            document = await results(base)
    assert metric(exposition, "lbdoctor_errors_total", component="agents", kind="foreign_node") == agent.requests
    # Shown as an agent that does not answer (its answer refused), never as node-b's probes.
    assert document["targets"] == []
    [shown] = document["agents"]
    assert shown["node"] == "node-a" and shown["state"] in ("stale", "unreachable") and "foreign_node" in shown["error"]
    unseen = [r for r in document["results"] if r["reason"] == "NodeAgentUnreachable"]
    assert [r["object"]["name"] for r in unseen] == ["node-a"]


def finding(check: str, node: str, name: str, reason: str, **more: Any) -> dict[str, Any]:
    return {
        "check": check,
        "status": "fail",
        "reason": reason,
        "object": {"kind": "Service", "namespace": "shop", "name": name},
        "target": {"pod": f"{name}-1", "ip": "10.0.10.7", "port": 8080},
        "message": "forged",
        "remedy": "",
        "caused_by": None,
        "node": node,
        "about": [f"pod:shop/{name}-1"],
        **more,
    }


async def test_an_agent_speaks_only_for_its_node_and_the_checks_only_agents_run(
    api: FakeApiServer, tmp_path: Path
) -> None:
    """A compromised agent's answer may claim anything: findings about another node, or of a check the cluster
    role runs itself (a failing selector on someone's Service), are refused; its own node's probe is shown."""
    answer = probes(
        "node-a",
        [row("node-a")],
        [
            finding("health_probe", "node-a", "web", "Timeout"),
            finding("health_probe", "node-b", "other", "ConnectionRefused"),
            finding("selector", "node-a", "victim", "NoPodsMatchSelector"),
            finding("health_probe", None, "nowhere", "Timeout"),  # type: ignore[arg-type]
        ],
    )
    async with agents({"document": answer}) as [agent]:
        api.state.apply(agent_pod("lbdoctor-node-abcde", NAMESPACE, agent.ip, "node-a", DAEMONSET))
        async with running(api, tmp_path, **cluster_settings(agent.port)) as base:

            async def shown() -> bool:
                document = await results(base)
                return any(r["object"]["name"] == "web" for r in document["results"])

            await eventually(shown, 30)
            document = await results(base)
            _, exposition = await get(f"{base}/metrics")
    names = {r["object"]["name"] for r in document["results"] if r["message"] == "forged"}
    assert names == {"web"}
    assert metric(exposition, "lbdoctor_errors_total", component="agents", kind="foreign_node")
    assert 'name="victim"' not in exposition and 'name="other"' not in exposition


@pytest.mark.parametrize("bomb", [False, True], ids=["plain", "gzip-bomb"])
async def test_a_huge_answer_is_cut_off_at_the_cap(api: FakeApiServer, tmp_path: Path, bomb: bool) -> None:
    """Before: the whole answer was read (a 600 MiB one took the cluster role to 1.26 GB). Now reading stops
    at peer_max_response_bytes: the agent gets to send little more than the cap (plus socket buffers). The
    cap counts decompressed bytes: a gzip bomb (600 MiB in well under 1 MiB on the wire) stops there too, so
    this process (the cluster role runs in it) never holds it."""
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB
    async with agents({"huge": 600 * MiB, "gzip": bomb}) as [agent]:
        api.state.apply(agent_pod("lbdoctor-node-abcde", NAMESPACE, agent.ip, "node-a", DAEMONSET))
        async with running(api, tmp_path, **cluster_settings(agent.port, peer_max_response_bytes=4 * MiB)) as base:

            async def refused() -> bool:
                _, exposition = await get(f"{base}/metrics")
                return bool(metric(exposition, "lbdoctor_errors_total", component="agents", kind="too_large"))

            await eventually(refused, 30)
            await asyncio.sleep(0.5)
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - peak_before
    print(
        f"FIGURE huge-cap: the agent sent {agent.sent / MiB:.0f} MiB of its 600 MiB answer (cap 4 MiB, gzip {bomb}); peak RSS +{grew:.0f} MiB"
    )
    assert grew < 200  # not the 600 MiB answer (nor twice it, as a bytearray and its JSON)
    if not bomb:
        assert agent.sent < 4 * MiB + 16 * MiB  # the cap and what loopback's socket buffers held, not 600 MiB


@pytest.mark.slow
async def test_a_huge_answer_keeps_the_cluster_roles_memory_bounded(api: FakeApiServer, tmp_path: Path) -> None:
    """The figure: peak RSS of a real cluster-role process reading a node agent that answers 600 MiB."""
    async with agents({"huge": 600 * MiB}) as [agent]:
        api.state.apply(agent_pod("lbdoctor-node-abcde", NAMESPACE, agent.ip, "node-a", DAEMONSET))
        process, _ = await start_replica(
            api.write_kubeconfig(tmp_path / "kubeconfig"),
            "lbdoctor-cluster-0",
            POD_NAMESPACE=NAMESPACE,
            LBDOCTOR_LEADER_ELECTION="false",
            LBDOCTOR_NODE_AGENT_INTERVAL_SECONDS="1",
            LBDOCTOR_NODE_AGENT_DAEMONSET=DAEMONSET,
            LBDOCTOR_NODE_AGENT_PORT=str(agent.port),
        )
        try:

            async def read_three_times() -> bool:
                return agent.requests >= 3

            await eventually(read_three_times, 60)
            status = await asyncio.to_thread(Path(f"/proc/{process.pid}/status").read_text)
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 20)
    peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]
    print(f"FIGURE huge-answer: peak RSS {peak:.0f} MiB after 3 answers of 600 MiB (sent {agent.sent / MiB:.0f} MiB)")
    assert peak < 300, f"peak RSS {peak:.0f} MiB"


async def test_the_node_role_caps_and_checks_the_published_target_groups(api: FakeApiServer, tmp_path: Path) -> None:
    """The same rules the other way: the cluster role's /api/v1/targetgroups, read by every node agent."""
    sent = {"huge": 0}

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"schema": "lbdoctor.targetgroups/v1", "target_groups": [')
        try:
            while sent["huge"] < 600 * MiB:
                await response.write(b"{}," * (MiB // 3))
                sent["huge"] += MiB
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def forged(_request: web.Request) -> web.Response:
        row = {"arn": "x", "owner": {"kind": "Service", "namespace": "shop", "name": "web"}, "port": "traffic-port"}
        return web.json_response(
            {"schema": "lbdoctor.targetgroups/v1", "target_groups": [{**row, "interval": 0, "timeout": 10**9}]}
        )

    for handler, kind in ((huge, "too_large"), (forged, "invalid_document")):
        app = web.Application()
        app.router.add_get("/api/v1/targetgroups", handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            settings = {
                "role": "node",
                "node_name": "node-a",
                "kube_proxy_mode": "off",
                "kube_proxy_healthz_url": "",
                "kube_proxy_metrics_url": "",
                "cluster_role_url": url,
                "peer_max_response_bytes": 4 * MiB,
            }
            async with running(api, tmp_path, **settings) as base:

                async def counted(kind: str = kind) -> bool:
                    _, exposition = await get(f"{base}/metrics")
                    return bool(metric(exposition, "lbdoctor_errors_total", component="agents", kind=kind))

                await eventually(counted, 20)
        finally:
            await runner.cleanup()
    assert sent["huge"] < 4 * MiB + 16 * MiB


def _pki(workdir: Path) -> dict[str, Path]:
    """A throwaway CA, a serving certificate for one DNS name (not the address it is reached at), and a
    client certificate, made by openssl."""
    require_tool("openssl")
    files = {
        name: workdir / name for name in ("ca.key", "ca.pem", "server.key", "server.pem", "client.key", "client.pem")
    }

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=lbdoctor test CA",
        "-keyout", str(files["ca.key"]), "-out", str(files["ca.pem"]))  # fmt: skip
    for who, extension in (
        ("server", "subjectAltName=DNS:lbdoctor-node.lbdoctor.svc"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        (workdir / f"{who}.ext").write_text(extension + "\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}", "-keyout", str(files[f"{who}.key"]),
            "-out", str(workdir / f"{who}.csr"))  # fmt: skip
        run("x509", "-req", "-in", str(workdir / f"{who}.csr"), "-CA", str(files["ca.pem"]), "-CAkey",
            str(files["ca.key"]), "-CAcreateserial", "-days", "1", "-out", str(files[f"{who}.pem"]),
            "-extfile", str(workdir / f"{who}.ext"))  # fmt: skip
    return files


async def test_tls_and_basic_auth_between_the_roles(tmp_path: Path) -> None:
    """The client side of a web config: a node agent serving TLS that wants a client certificate and basic
    auth, reached by IP but verified for the DaemonSet's DNS name; a wrong password, a wrong name or no
    client certificate reads nothing and is counted."""
    files = await asyncio.to_thread(_pki, tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files["ca.pem"]))
    server_tls.load_cert_chain(files["server.pem"], files["server.key"])
    server_tls.verify_mode = ssl.CERT_REQUIRED
    document = probes("node-a", [row("node-a")])
    expected = "Basic " + base64.b64encode(b"prometheus:s3cret").decode()

    async def answer(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": "Basic"})
        return web.json_response(document)

    app = web.Application()
    app.router.add_get("/api/v1/probes", answer)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    ip = next_ip()
    await web.TCPSite(runner, ip, 0, ssl_context=server_tls).start()
    base = f"https://{ip}:{runner.addresses[0][1]}"
    password = tmp_path / "password"
    await asyncio.to_thread(password.write_text, "s3cret\n")
    good = {
        "role": "cluster",
        "peer_tls_ca_file": str(files["ca.pem"]),
        "peer_tls_cert_file": str(files["client.pem"]),
        "peer_tls_key_file": str(files["client.key"]),
        "peer_tls_server_name": "lbdoctor-node.lbdoctor.svc",
        "peer_basic_auth_username": "prometheus",
        "peer_basic_auth_password_file": str(password),
    }

    async def read(**settings: Any) -> tuple[int, list[tuple[str, str]]]:
        errors = _Errors()
        feed = peers.ProbeFeed(errors, peers.PeerClient.from_settings(Settings(**settings)))
        try:
            found = await feed.fetch([peers.Agent(base, "node-a")])
        finally:
            await feed.close()
        return len(found), errors.seen

    try:
        assert await read(**good) == (1, [])
        assert await read(**{**good, "peer_tls_server_name": ""}) == (
            0,
            [("agents", "unreachable")],
        )  # its IP is not in the certificate
        assert await read(**{**good, "peer_tls_cert_file": "", "peer_tls_key_file": ""}) == (
            0,
            [("agents", "unreachable")],
        )
        await asyncio.to_thread(password.write_text, "wrong\n")
        assert await read(**good) == (0, [("agents", "http_error")])
        await asyncio.to_thread(password.write_text, "s3cret")  # rotated back: read at each request
        assert await read(**good) == (1, [])
    finally:
        await runner.cleanup()


class _Errors:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def error(self, component: str, kind: str) -> None:
        self.seen.append((component, kind))
