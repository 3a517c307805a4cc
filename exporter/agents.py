"""Adapter between lbdoctor's own processes: the cluster role reads the node agents' probe states, the
node agents read the real target-group settings the cluster role publishes.

Both ride the JSON APIs each role already serves (``/api/v1/results``, ``/api/v1/targetgroups``), and
trust them no further than they must:

- the cluster role reads only its own node agents: pods of its own namespace controlled by its
  DaemonSet (``node_agent_daemonset``), never any pod that merely carries the agents' labels, and an
  agent speaks only for the node its pod runs on;
- every answer is read as a stream and dropped at ``peer_max_response_bytes`` (a 600 MiB answer
  must not cost 1.2 GB of memory), and must carry the expected schema; each row is validated;
- TLS (a CA, a client certificate, the server name to verify) and basic auth when configured, for
  servers behind a ``web_config_file``.

Failures are counted (``lbdoctor_errors_total{component="agents"}``) and the last good answer is kept,
so one unreachable or misbehaving agent never stops a round.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from exporter.lb.targets import TargetStatus
from exporter.model.results import CheckResult
from exporter.report import parse_targets, results_from_json
from exporter.settings import Settings
from exporter.telemetry import ErrorSink

log = structlog.get_logger("lbdoctor.agents")

RESULTS_SCHEMA = "lbdoctor.results/v1"
_CHUNK = 64 * 1024
_PARSE_ON_LOOP = 256 * 1024  # bigger answers are parsed in a worker thread


class PeerError(Exception):
    """An answer lbdoctor will not use; ``kind`` is the lbdoctor_errors_total kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class PeerClient:
    """How one role reads the other's API: size cap, timeout, TLS and basic auth."""

    max_bytes: int = 16 * 1024 * 1024
    timeout: float = 5.0
    tls: ssl.SSLContext | None = None  # None: the system's defaults for https:// URLs
    server_name: str | None = None  # verify the certificate for this name (agents are reached by IP)
    username: str | None = None
    password_file: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PeerClient:
        return cls(
            max_bytes=settings.peer_max_response_bytes,
            tls=tls_context(settings),
            server_name=settings.peer_tls_server_name or None,
            username=settings.peer_basic_auth_username or None,
            password_file=settings.peer_basic_auth_password_file or None,
        )

    def _headers(self) -> dict[str, str]:
        """Basic auth, the password read at each request so a rotated Secret needs no restart."""
        if not self.username:
            return {}
        password = ""
        if self.password_file:
            try:
                password = Path(self.password_file).read_text()[:4096].rstrip("\r\n")
            except OSError as error:
                raise PeerError("auth_file", f"cannot read {self.password_file}: {error.strerror}") from None
        token = base64.b64encode(f"{self.username}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    async def get_json(self, session: aiohttp.ClientSession, url: str) -> Any:
        """GET ``url`` and parse its JSON; raises PeerError, aiohttp.ClientError or TimeoutError."""
        options: dict[str, Any] = {"timeout": aiohttp.ClientTimeout(total=self.timeout), "headers": self._headers()}
        if url.startswith("https://"):
            options["ssl"] = self.tls if self.tls is not None else True
            if self.server_name:
                options["server_hostname"] = self.server_name
        async with session.get(url, **options) as response:
            if response.status != 200:
                raise PeerError("http_error", f"HTTP {response.status}")
            if response.content_length is not None and response.content_length > self.max_bytes:
                raise PeerError("too_large", f"answer of {response.content_length} bytes, more than {self.max_bytes}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > self.max_bytes:
                    raise PeerError("too_large", f"answer longer than {self.max_bytes} bytes")
        try:
            if len(body) > _PARSE_ON_LOOP:
                return await asyncio.to_thread(json.loads, body)
            return json.loads(body)
        except ValueError as error:
            raise PeerError("invalid_document", f"not JSON: {error}") from None


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The client side of the peers' web_config_file TLS; None when nothing is configured."""
    if not (
        settings.peer_tls_ca_file
        or settings.peer_tls_cert_file
        or settings.peer_tls_insecure_skip_verify
        or settings.peer_tls_server_name
    ):
        return None
    context = ssl.create_default_context(cafile=settings.peer_tls_ca_file or None)
    if settings.peer_tls_insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.peer_tls_cert_file:
        context.load_cert_chain(settings.peer_tls_cert_file, settings.peer_tls_key_file or None)
    return context


@dataclass(frozen=True)
class Agent:
    """One node agent to read: its base URL and, when found through its pod, the node it speaks for."""

    base: str
    node: str | None = None  # None: configured by URL (node_agent_urls), trusted for any node


class ProbeFeed:
    """The probe states of every node agent, fetched concurrently; an agent that fails keeps its last
    answer for ``stale_after`` seconds, then drops out."""

    def __init__(self, errors: ErrorSink, client: PeerClient | None = None, *, stale_after: float = 120.0) -> None:
        self._errors = errors
        self._client = client or PeerClient()
        self._stale_after = stale_after
        self._last: dict[str, tuple[float, tuple[TargetStatus, ...]]] = {}
        self._results: dict[str, tuple[CheckResult, ...]] = {}  # each agent's failing and warning results
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, agents: Iterable[Agent | str]) -> tuple[TargetStatus, ...]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        loop = asyncio.get_running_loop()
        wanted = {agent.base: agent for agent in (a if isinstance(a, Agent) else Agent(a) for a in agents)}

        async def one(agent: Agent) -> None:
            assert self._session is not None
            try:
                document = await self._client.get_json(self._session, f"{agent.base}/api/v1/results")
                self._last[agent.base] = (loop.time(), self._statuses(agent, document))
            except PeerError as error:
                self._errors.error("agents", error.kind)
                log.warning("node agent's answer refused", agent=agent.base, kind=error.kind, error=str(error))
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                self._errors.error("agents", "unreachable")
                log.debug("node agent unreachable", agent=agent.base, error=str(error))

        await asyncio.gather(*(one(agent) for agent in wanted.values()))
        now = loop.time()
        for base in [b for b in self._last if b not in wanted or now - self._last[b][0] > self._stale_after]:
            del self._last[base]
            self._results.pop(base, None)
        return tuple(status for _, statuses in self._last.values() for status in statuses)

    def _statuses(self, agent: Agent, document: Any) -> tuple[TargetStatus, ...]:
        if not isinstance(document, dict) or document.get("schema") != RESULTS_SCHEMA:
            raise PeerError("invalid_document", f"not a {RESULTS_SCHEMA} document")
        if document.get("role") != "node" or not isinstance(document.get("targets"), list):
            raise PeerError("invalid_document", "not a node agent's results (role node, a list of targets)")
        if agent.node is not None and document.get("node") != agent.node:
            raise PeerError("foreign_node", f"speaks for node {document.get('node')!r}, runs on {agent.node!r}")
        parsed = parse_targets(document["targets"], node=agent.node)
        if parsed.rejected:
            self._errors.error("agents", "invalid_rows")
            log.warning("node agent's rows refused", agent=agent.base, rows=parsed.rejected)
        if parsed.foreign:
            self._errors.error("agents", "foreign_node")
            log.warning("node agent's rows about other nodes refused", agent=agent.base, rows=parsed.foreign)
        self._results[agent.base] = results_from_json(document.get("results"), node=agent.node)
        return parsed.statuses

    def results(self) -> tuple[CheckResult, ...]:
        """The node agents' failing and warning results from the last ``fetch``: the causal rules link the
        cluster role's findings with them (a security group that explains a node's failing probe)."""
        return tuple(result for base in self._last for result in self._results.get(base, ()))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def fetch_targetgroups(session: aiohttp.ClientSession, base: str, client: PeerClient | None = None) -> Any:
    """The cluster role's ``lbdoctor.targetgroups/v1`` document, size-capped; raises on any failure (the
    schema is checked by ``exporter.lb.aws_settings.from_document``)."""
    return await (client or PeerClient()).get_json(session, f"{base}/api/v1/targetgroups")


def agent_base(scheme: str, ip: str, port: int) -> str:
    return f"{scheme}://[{ip}]:{port}" if ":" in ip else f"{scheme}://{ip}:{port}"


def agent_bases(pod_ips: Sequence[str], port: int, scheme: str = "http") -> list[str]:
    return [agent_base(scheme, ip, port) for ip in pod_ips]
