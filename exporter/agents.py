"""Adapter between lbdoctor's own processes: the cluster role reads the node agents' probe states, the
node agents read the real target-group settings the cluster role publishes.

The cluster role reads each node agent's ``/api/v1/probes`` (``lbdoctor.probes/v1``, exporter/exchange.py)
every ``node_agent_interval_seconds`` with its last ETag, so an agent whose states did not change answers
``304 Not Modified``; agents older than that endpoint are read at ``/api/v1/results``. The node agents read
``/api/v1/targetgroups``. Both trust the other no further than they must:

- the cluster role reads only its own node agents: pods of its own namespace controlled by its
  DaemonSet (``node_agent_daemonset``), never any pod that merely carries the agents' labels, and an
  agent speaks only for the node its pod runs on, and only for the checks only node agents run;
- every answer is read as a stream and dropped at ``peer_max_response_bytes`` (a 600 MiB answer
  must not cost 1.2 GB of memory; decompressed bytes count), and must carry the expected schema; each
  row is validated;
- TLS (a CA, a client certificate, the server name to verify) and basic auth when configured, for
  servers behind a ``web_config_file``.

Failures are counted (``lbdoctor_errors_total{component="agents"}``) and the last good answer is kept for a
while, shown as stale with its age, so one unreachable or misbehaving agent never stops a round and is
never shown as healthy.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import structlog

from exporter.exchange import AgentState, AgentView, DocumentError, parse_legacy_document, parse_node_document
from exporter.lb.targets import TargetStatus
from exporter.model.results import CheckResult
from exporter.settings import Settings
from exporter.telemetry import ErrorSink

log = structlog.get_logger("lbdoctor.agents")

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
        answer = await self.get(session, url)
        if answer.status != 200:
            raise PeerError("http_error", f"HTTP {answer.status}")
        return answer.document

    async def get(self, session: aiohttp.ClientSession, url: str, etag: str | None = None) -> PeerAnswer:
        """GET ``url``, conditionally when ``etag`` is given (304: no document), gzip accepted; a 200's JSON is
        parsed. The size cap applies to the decompressed body. Other statuses are returned without a body.
        Raises PeerError, aiohttp.ClientError or TimeoutError."""
        headers = {**self._headers(), "Accept-Encoding": "gzip"}
        if etag:
            headers["If-None-Match"] = etag
        options: dict[str, Any] = {"timeout": aiohttp.ClientTimeout(total=self.timeout), "headers": headers}
        if url.startswith("https://"):
            options["ssl"] = self.tls if self.tls is not None else True
            if self.server_name:
                options["server_hostname"] = self.server_name
        async with session.get(url, **options) as response:
            head = 17 + sum(len(name) + len(value) + 4 for name, value in response.raw_headers)
            if response.status != 200:
                return PeerAnswer(response.status, None, None, head + (response.content_length or 0))
            if response.content_length is not None and response.content_length > self.max_bytes:
                raise PeerError("too_large", f"answer of {response.content_length} bytes, more than {self.max_bytes}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > self.max_bytes:
                    raise PeerError("too_large", f"answer longer than {self.max_bytes} bytes")
            wire = head + (response.content_length if response.content_length is not None else len(body))
            etag_seen = response.headers.get("ETag")
        try:
            if len(body) > _PARSE_ON_LOOP:
                document = await asyncio.to_thread(json.loads, body)
            else:
                document = json.loads(body)
        except ValueError as error:
            raise PeerError("invalid_document", f"not JSON: {error}") from None
        return PeerAnswer(200, document, etag_seen[:200] if etag_seen else None, wire)


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


@dataclass(frozen=True)
class PeerAnswer:
    """One conditional read: ``document`` is None on 304 Not Modified."""

    status: int
    document: Any
    etag: str | None
    wire_bytes: int  # what came over the connection: the status line, headers and the (compressed) body


class ReadTelemetry(Protocol):
    def agent_read(self, outcome: str, wire_bytes: int) -> None: ...


class _NoTelemetry:
    def agent_read(self, outcome: str, wire_bytes: int) -> None:
        return None


@dataclass
class _Known:
    """What the cluster role keeps of one node agent between reads."""

    agent: Agent
    node: str
    etag: str | None = None
    read_at: float | None = None  # wall clock, last successful read
    read_clock: float | None = None  # the loop's clock, same moment (the keep window)
    changed_at: float | None = None
    ready: bool = False
    error: str | None = None
    gone_at: float | None = None  # the loop's clock when its pod went away
    legacy_until: float = 0.0  # an older agent without /api/v1/probes: read /api/v1/results until then
    targets: tuple[TargetStatus, ...] = ()
    results: tuple[CheckResult, ...] = ()

    def view(self, now: float, keep_for: float) -> AgentView:
        kept = self.read_clock is not None and now - self.read_clock <= keep_for
        if self.gone_at is not None:
            state = AgentState.GONE
        elif self.read_clock is not None and self.error is None:
            state = AgentState.OK
        else:
            state = AgentState.STALE if kept else AgentState.UNREACHABLE
        return AgentView(
            node=self.node,
            url=self.agent.base,
            state=state,
            read_at=self.read_at if kept else None,
            changed_at=self.changed_at,
            ready=self.ready,
            error=self.error,
            targets=self.targets if kept else (),
            results=self.results if kept else (),
        )


_LEGACY_RETRY = 300.0  # seconds before an agent that had no /api/v1/probes is asked for it again


class ProbeFeed:
    """Every node agent's probe states and node-only findings, read with conditional requests
    (``lbdoctor.probes/v1``; 304 while nothing changed), at most ``concurrency`` at a time.

    An agent that stops answering keeps its last answer for ``keep_for`` seconds, shown as stale with its age,
    then shows as unreachable with nothing; an agent whose pod went away shows as gone for as long."""

    def __init__(
        self,
        errors: ErrorSink,
        client: PeerClient | None = None,
        *,
        keep_for: float = 120.0,
        concurrency: int = 64,
        telemetry: ReadTelemetry | None = None,
    ) -> None:
        self._errors = errors
        self._client = client or PeerClient()
        self._keep_for = keep_for
        self._concurrency = concurrency
        self._telemetry = telemetry or _NoTelemetry()
        self._known: dict[str, _Known] = {}
        self._session: aiohttp.ClientSession | None = None
        self._views: tuple[AgentView, ...] = ()

    async def read(self, agents: Iterable[Agent | str]) -> bool:
        """Read every agent once; True when what the agents say (or their state) changed."""
        if self._session is None:
            # Keep-alive connections, one per agent in flight: a read every few seconds reuses them (the
            # agents close idle ones after their header timeout), so TLS is not negotiated at every read.
            connector = aiohttp.TCPConnector(limit=self._concurrency, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        loop = asyncio.get_running_loop()
        wanted = {agent.base: agent for agent in (a if isinstance(a, Agent) else Agent(a) for a in agents)}
        now = loop.time()
        for base, known in list(self._known.items()):
            if base in wanted:
                known.gone_at = None
                if known.agent != wanted[base]:  # the same address, another pod or node: start afresh
                    del self._known[base]
            elif (
                known.read_clock is None
                or now - known.read_clock > self._keep_for
                or (known.gone_at is not None and now - known.gone_at > self._keep_for)
            ):
                del self._known[base]  # nothing of it left to show
            elif known.gone_at is None:
                known.gone_at = now
        for base, agent in wanted.items():
            self._known.setdefault(base, _Known(agent, agent.node or ""))
        slots = asyncio.Semaphore(self._concurrency)

        async def one(known: _Known) -> None:
            async with slots:
                await self._read_one(known, loop)

        await asyncio.gather(*(one(self._known[base]) for base in wanted))
        now = loop.time()
        views = tuple(sorted((k.view(now, self._keep_for) for k in self._known.values()), key=_order))
        changed = _signature(views) != _signature(self._views)
        self._views = views  # holds the old tuples until now, so their ids were not reused
        return changed

    async def _read_one(self, known: _Known, loop: asyncio.AbstractEventLoop) -> None:
        assert self._session is not None
        agent = known.agent
        legacy = loop.time() < known.legacy_until
        path = "/api/v1/results" if legacy else "/api/v1/probes"
        try:
            answer = await self._client.get(self._session, f"{agent.base}{path}", None if legacy else known.etag)
            if answer.status == 404 and not legacy:
                known.legacy_until = loop.time() + _LEGACY_RETRY
                log.info("node agent has no /api/v1/probes (older version): reading /api/v1/results", agent=agent.base)
                answer = await self._client.get(self._session, f"{agent.base}/api/v1/results", None)
                legacy = True
            if answer.status == 304:
                self._telemetry.agent_read("not_modified", answer.wire_bytes)
            elif answer.status == 200:
                self._telemetry.agent_read("changed", answer.wire_bytes)
                document = (parse_legacy_document if legacy else parse_node_document)(answer.document, agent.node)
                if document.rejected_rows:
                    self._errors.error("agents", "invalid_rows")
                    log.warning("node agent's rows refused", agent=agent.base, rows=document.rejected_rows)
                if document.foreign_rows:
                    self._errors.error("agents", "foreign_node")
                    log.warning(
                        "node agent's rows about other nodes refused", agent=agent.base, rows=document.foreign_rows
                    )
                known.node, known.ready, known.changed_at = document.node, document.ready, document.changed_at
                known.targets, known.results = document.targets, document.results
                known.etag = None if legacy else answer.etag
            else:
                raise PeerError("http_error", f"HTTP {answer.status}")
        except (PeerError, DocumentError) as error:
            self._failed(known, error.kind, str(error))
            log.warning("node agent's answer refused", agent=agent.base, kind=error.kind, error=str(error))
            return
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            self._failed(known, "unreachable", _one_line(error))
            log.debug("node agent unreachable", agent=agent.base, error=str(error))
            return
        known.read_at, known.read_clock, known.error = time.time(), loop.time(), None

    def _failed(self, known: _Known, kind: str, why: str) -> None:
        self._errors.error("agents", kind)
        self._telemetry.agent_read("failed", 0)
        known.error = f"{kind}: {why}"[:300]
        known.etag = None  # read it whole next time

    def views(self) -> tuple[AgentView, ...]:
        """Each agent's state, age and what it said, from the last ``read``."""
        return self._views

    def statuses(self) -> tuple[TargetStatus, ...]:
        """The probe states of the agents shown (fresh or stale): the ELB's verdict is correlated with them."""
        return tuple(status for view in self._views if view.shows for status in view.targets)

    def results(self) -> tuple[CheckResult, ...]:
        """The agents' findings of the checks only they run: the causal rules link the cluster role's findings
        with them (a security group that explains a node's failing probe)."""
        return tuple(result for view in self._views if view.shows for result in view.results)

    async def fetch(self, agents: Iterable[Agent | str]) -> tuple[TargetStatus, ...]:
        """``read`` and the probe states."""
        await self.read(agents)
        return self.statuses()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _signature(views: Sequence[AgentView]) -> list[tuple[Any, ...]]:
    """What a read can change, cheaply: a 200 replaces an agent's tuples, a 304 keeps them (read times aside)."""
    return [(v.url, v.node, v.state, v.ready, v.error, id(v.targets), id(v.results)) for v in views]


def _order(view: AgentView) -> tuple[str, str]:
    return (view.node, view.url)


def _one_line(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorError) and error.os_error is not None:
        return str(error.os_error.strerror or error.os_error)
    if isinstance(error, TimeoutError):
        return "no answer within the timeout"
    return (str(error) or type(error).__name__).splitlines()[0]


async def fetch_targetgroups(session: aiohttp.ClientSession, base: str, client: PeerClient | None = None) -> Any:
    """The cluster role's ``lbdoctor.targetgroups/v1`` document, size-capped; raises on any failure (the
    schema is checked by ``exporter.lb.aws_settings.from_document``)."""
    return await (client or PeerClient()).get_json(session, f"{base}/api/v1/targetgroups")


def agent_base(scheme: str, ip: str, port: int) -> str:
    return f"{scheme}://[{ip}]:{port}" if ":" in ip else f"{scheme}://{ip}:{port}"


def agent_bases(pod_ips: Sequence[str], port: int, scheme: str = "http") -> list[str]:
    return [agent_base(scheme, ip, port) for ip in pod_ips]
