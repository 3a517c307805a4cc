"""The real node agent under attack: a child process (``python -m exporter run --role node``) against the fake
API server in this process, its "pods" real servers on loopback addresses here, measured from outside
(/proc/<pid>: CPU, RSS, descriptors; its own stderr; what the pods saw; its /metrics and API).

Each fault of docs/reliability.md is a scenario here: ``tests/faults`` asserts on what it measures and
``bench/faults.py`` prints the figures. Loopback only; every scenario is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.fakeapi import ClusterState, FakeApiServer
from exporter.fakeapi.state import KINDS_BY_KEY
from tests.conftest import next_ip

NODE = "ip-10-0-1-23.ec2.internal"
NLB = "service.beta.kubernetes.io/aws-load-balancer-"
ROOT = Path(__file__).resolve().parents[2]
_TICKS = os.sysconf("SC_CLK_TCK")


# ---- the cluster's objects --------------------------------------------------------------------------


def node_object(ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod_object(namespace: str, name: str, app: str, ip: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "ports": [{"containerPort": port}]}]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0}],
        },
    }


def nlb_object(
    namespace: str,
    name: str,
    app: str,
    port: int,
    *,
    interval: int = 5,
    timeout: int = 2,
    annotations: dict[str, str] | None = None,
    target_type: str = "ip",
    node_port: int | None = None,
) -> dict[str, Any]:
    """An NLB Service with an HTTP health check on /healthz (the controller's annotations)."""
    service_port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}
    if node_port is not None:
        service_port["nodePort"] = node_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {
                NLB + "type": "external",
                NLB + "nlb-target-type": target_type,
                NLB + "healthcheck-protocol": "http",
                NLB + "healthcheck-path": "/healthz",
                NLB + "healthcheck-interval": str(interval),
                NLB + "healthcheck-timeout": str(timeout),
                NLB + "healthcheck-healthy-threshold": "2",
                NLB + "healthcheck-unhealthy-threshold": "2",
                **(annotations or {}),
            },
        },
        "spec": {"type": "LoadBalancer", "selector": {"app": app}, "ports": [service_port]},
    }


# ---- "pods" -------------------------------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Pod:
    """A TCP server on its own loopback address; counts connections, keeps the request heads it read."""

    def __init__(self, handler: Handler, ip: str | None = None) -> None:
        self.ip = ip or next_ip()
        self.port = 0
        self.connections = 0
        self.open = 0
        self.heads: list[tuple[float, bytes]] = []
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Pod:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            self.open += 1
            self._writers.add(writer)
            try:
                await self._handler(reader, writer)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                pass
            finally:
                self.open -= 1
                self._writers.discard(writer)
                with contextlib.suppress(Exception):
                    writer.close()

        self._server = await asyncio.start_server(serve, self.ip, self.port, limit=1 << 20)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def read_head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append((time.monotonic(), head))
        return head

    def probe_times(self) -> list[float]:
        return [at for at, _ in self.heads]


def healthy(pod_ref: list[Pod]) -> Handler:
    """Answers 200 to every request, as a healthy app does."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await pod_ref[0].read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()

    return handler


async def healthy_pod(ip: str | None = None) -> Pod:
    ref: list[Pod] = []
    pod = Pod(healthy(ref), ip)
    ref.append(pod)
    return await pod.start()


def max_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch without a probe between ``start`` and ``end`` (its edges included)."""
    inside = [t for t in times if start <= t <= end]
    points = [start, *inside, end]
    return max(b - a for a, b in itertools.pairwise(points))


# ---- the daemon -------------------------------------------------------------------------------------


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    ip: str
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def rss_mib(self) -> tuple[float, float]:
        """Current and peak resident set size."""
        values: dict[str, float] = {}
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) / 1024
        return values["VmRSS"], values["VmHWM"]

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def log_bytes(self) -> int:
        return self.log.stat().st_size

    def alive(self) -> bool:
        return self.process.poll() is None

    async def get(self, path: str, *, source: str | None = None, timeout: float = 15.0) -> bytes:
        """GET from this daemon with the standard library, in a thread (from ``source`` when given)."""

        def fetch() -> bytes:
            if source is None:
                with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                    return bytes(response.read())
            sock = socket.create_connection((self.ip, self.port), timeout=timeout, source_address=(source, 0))
            with sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.ip}\r\nConnection: close\r\n\r\n".encode())
                chunks = []
                while chunk := sock.recv(1 << 16):
                    chunks.append(chunk)
            head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise OSError(f"answer: {head[:40]!r}")
            return body

        return await asyncio.to_thread(fetch)

    async def results(self) -> dict[str, Any]:
        return dict(json.loads(await self.get("/api/v1/results")))

    async def targets(self, namespace: str | None = None) -> list[dict[str, Any]]:
        rows = (await self.results())["targets"]
        return [row for row in rows if namespace is None or row["namespace"] == namespace]

    async def wait_ready(self, deadline: float = 60.0) -> None:
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            if not self.alive():
                raise AssertionError(f"the daemon exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                await self.get("/readyz", timeout=2)
                return
            await asyncio.sleep(0.2)
        raise AssertionError("the daemon did not become ready")

    async def wait_for(self, check: Callable[[], Awaitable[bool]], deadline: float, step: float = 0.5) -> bool:
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            with contextlib.suppress(OSError, ValueError, KeyError):
                if await check():
                    return True
            await asyncio.sleep(step)
        return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port(ip: str) -> int:
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    api: FakeApiServer
    kubeconfig: Path
    folder: Path
    pods: list[Pod] = field(default_factory=list)

    def apply(self, *objects: dict[str, Any]) -> None:
        for obj in objects:
            self.api.state.apply(obj)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.api.state.delete(KINDS_BY_KEY[kind], namespace, name)

    async def pod(self, pod: Pod) -> Pod:
        self.pods.append(pod)
        return pod

    async def add_victims(self, count: int, namespace: str = "shop") -> list[Pod]:
        """``count`` healthy pods, each behind its own NLB with an HTTP check every 5 s."""
        victims = []
        for index in range(count):
            pod = await self.pod(await healthy_pod())
            name = f"web-{index}"
            self.apply(pod_object(namespace, name, name, pod.ip, pod.port), nlb_object(namespace, name, name, pod.port))
            victims.append(pod)
        return victims

    @contextlib.asynccontextmanager
    async def daemon(
        self, *, descriptors: int | None = None, env: dict[str, str] | None = None
    ) -> AsyncIterator[Daemon]:
        """The node agent as a child process; ``descriptors`` caps its RLIMIT_NOFILE (soft and hard)."""
        ip = next_ip()
        port = free_port(ip)
        log = self.folder / f"daemon-{port}.log"
        settings = {
            "LBDOCTOR_LOG_FORMAT": "json",
            "LBDOCTOR_LOG_LEVEL": "info",
            "LBDOCTOR_KUBE_PROXY_MODE": "off",
            "LBDOCTOR_PROBE_NODE_PATH": "false",
            "LBDOCTOR_PUBLISH_INTERVAL_SECONDS": "0.5",
            **(env or {}),
        }
        environ = {k: v for k, v in os.environ.items() if not k.startswith("LBDOCTOR_")}
        environ.update(settings)
        # FAULTS_DAEMON_ROOT: run another checkout's daemon (the code before a fix) against the same attack.
        root = Path(os.environ.get("FAULTS_DAEMON_ROOT") or ROOT)
        environ["PYTHONPATH"] = str(root)

        def limit() -> None:
            if descriptors is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (descriptors, descriptors))

        command = [sys.executable, "-m", "exporter", "run", "--role", "node", "--node-name", NODE]
        command += ["--kubeconfig", str(self.kubeconfig), "--listen", f"{ip}:{port}"]
        with log.open("wb") as sink:
            process = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the child runs on its own
                command, stdout=sink, stderr=subprocess.STDOUT, env=environ, cwd=root, preexec_fn=limit
            )
        daemon = Daemon(process, ip, port, log)
        try:
            await daemon.wait_ready()
            yield daemon
        finally:
            await asyncio.to_thread(daemon.stop)


@contextlib.asynccontextmanager
async def cluster(folder: Path) -> AsyncIterator[Cluster]:
    api = FakeApiServer(ClusterState(), bookmark_interval=5.0)
    await api.start()
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a local folder, once
    made = Cluster(api, api.write_kubeconfig(folder / "kubeconfig"), folder)
    made.apply(node_object("127.0.0.1"))
    try:
        yield made
    finally:
        for pod in made.pods:
            await pod.stop()
        await api.stop()


@contextlib.contextmanager
def raised_descriptor_limit() -> Any:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
