"""aiohttp application. /metrics renders in short slices on the loop, the other pages in a worker thread;
either way a request never stalls probing for long.

The face is hardened (docs/reliability.md): connections are accepted by ``listener.Listener`` (caps per
process and per client, TLS from the web config), a connection that sends no complete request head
within ``WebOptions.header_timeout`` is closed, basic auth, response headers and the rate limit come
from the exporter-toolkit ``web-config.yml``, concurrent requests for one page share one rendering, and
bodies are written in 64 KiB pieces with a deadline, so a crowd of slow readers costs neither memory
nor connections for long.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gzip
import hashlib
import itertools
import json
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from exporter import __version__
from exporter.aws.metrics import render_aws
from exporter.checks.causes import order
from exporter.checks.registry import Role
from exporter.metrics.bindings import binding_steps
from exporter.metrics.collectors import ProbeRenderer, check_steps, kube_proxy_steps
from exporter.metrics.exposition import CONTENT_TYPE
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.report import iso, results_json, summary, targets_json
from exporter.state import Board, Published
from exporter.web import statuspage
from exporter.web.listener import Limits, Listener, bind
from exporter.web.webconfig import Watched, WebConfig, san_allowed

log = structlog.get_logger("lbdoctor.web")

BOARD = web.AppKey("board", Board)
METRICS = web.AppKey("metrics", SelfMetrics)
RENDERER = web.AppKey("renderer", ProbeRenderer)

# The kubelet's probes must work whatever the web config asks of other clients.
UNGUARDED = frozenset({"/healthz", "/readyz"})
_WRITE_PIECE = 64 * 1024


@dataclass
class WebOptions:
    """How the HTTP face protects itself (settings ``web_*``)."""

    limits: Limits = field(default_factory=Limits)
    header_timeout: float = 10.0  # a complete request head within this long of connecting (or the last answer)
    send_timeout: float = 60.0  # a response must be read within this long
    config: Watched | None = None  # web-config.yml, when set


OPTIONS = web.AppKey("options", WebOptions)
SHARED = web.AppKey("shared", dict)


def exposition_steps(board: Board, metrics: SelfMetrics, renderer: ProbeRenderer, out: list[bytes]) -> Iterator[None]:
    """The whole exposition in slices of a fraction of a millisecond; yields between them, fills ``out``.

    Reads one publication and never awaits. The render time reported in
    ``lbdoctor_cycle_duration_seconds{loop="render"}`` counts the slices only, not the pauses.
    """
    published = board.current
    text: list[str] = []
    spent = 0.0
    resumed = time.perf_counter()
    for _ in itertools.chain(
        check_steps(published.results, text, Role(board.role)),
        renderer.steps(published.probes, text),
        kube_proxy_steps(published.node, published.dataplane, published.results, text),
        _aws_steps(published, text),
        _binding_steps(published, text),
    ):
        spent += time.perf_counter() - resumed
        yield
        resumed = time.perf_counter()
    # Encoding is a copy that holds the GIL too: done in batches of about 256 KiB between yields.
    batch = 0
    for part in text:
        out.append(part.encode())
        batch += len(part)
        if batch >= 256 * 1024:
            spent += time.perf_counter() - resumed
            yield
            resumed = time.perf_counter()
            batch = 0
    # Set before the self-metrics are rendered, so this exposition carries its own render time.
    metrics.cycle_duration.labels("render").set(spent + time.perf_counter() - resumed)
    out.append(metrics.render())


def _aws_steps(published: Published, out: list[str]) -> Iterator[None]:
    if published.aws is not None:
        out.extend(render_aws(published.aws.targets, published.aws.aws, time.time()))
    yield


def _binding_steps(published: Published, out: list[str]) -> Iterator[None]:
    if published.gates or published.bindings:
        yield from binding_steps(published.gates, published.bindings, time.time(), out)


PROXIED = "X-Lbdoctor-Proxied"  # set by a standby cluster role asking the leader


async def _targetgroups(request: web.Request) -> web.Response:
    """The real target-group settings the cluster role read from AWS, for the node agents."""
    source = request.app[BOARD].targetgroups
    if source is not None:
        status, document, headers = await source(PROXIED in request.headers)
        return web.json_response(document, status=status, headers=headers)
    aws = request.app[BOARD].current.aws
    if aws is None:
        return web.json_response(
            {"error": "no AWS data here (not the leading cluster role, or no cluster_name)"}, status=404
        )
    return web.json_response(aws.targetgroups_document(iso(time.time())))


def render_metrics(board: Board, metrics: SelfMetrics, renderer: ProbeRenderer) -> bytes:
    """The whole exposition in one go (benchmarks, tools); the server renders it in slices instead."""
    out: list[bytes] = []
    for _ in exposition_steps(board, metrics, renderer, out):
        pass
    return b"".join(out)


async def shared(app: web.Application, key: str, produce: Callable[[], Awaitable[bytes]]) -> bytes:
    """``produce()``'s answer, computed once for every request that asks while it is being computed: eight
    concurrent scrapes cost one rendering and one body in memory, not eight. The computation runs as a
    task of its own, so a client that hangs up does not cancel it for the others."""
    pending: dict[str, asyncio.Future[bytes]] = app[SHARED]
    running = pending.get(key)
    if running is None:
        running = asyncio.ensure_future(produce())
        pending[key] = running

        def finished(task: asyncio.Future[bytes]) -> None:
            if pending.get(key) is task:
                del pending[key]
            if not task.cancelled():
                task.exception()  # retrieved here too, in case every requester went away

        running.add_done_callback(finished)
    return await asyncio.shield(running)


async def send(
    request: web.Request, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Write ``body`` in pieces, waiting for the client between them: a slow reader holds one piece of it,
    not a copy of the whole; one that has not read it all by ``send_timeout`` is disconnected."""
    response = web.StreamResponse(headers={"Content-Type": content_type, **(headers or {})})
    response.content_length = len(body)
    view = memoryview(body)
    try:
        async with asyncio.timeout(request.app[OPTIONS].send_timeout):
            await response.prepare(request)
            for offset in range(0, len(body), _WRITE_PIECE):
                await response.write(view[offset : offset + _WRITE_PIECE])
            await response.write_eof()
    except TimeoutError:
        request.app[METRICS].error("web", "send_timeout")
        if request.transport is not None:
            request.transport.abort()
    except ConnectionResetError:
        pass  # the client went away; nothing to tell it
    return response


def _pack(parts: list[bytes], gzipped: bool) -> bytes:
    # Runs in a worker thread: bytes.join and zlib both release the GIL while they copy and compress
    # megabytes, so this does not compete with the event loop (str.join and str.encode would).
    body = b"".join(parts)
    return gzip.compress(body, compresslevel=1) if gzipped else body


async def _metrics(request: web.Request) -> web.StreamResponse:
    app = request.app
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "")

    async def produce() -> bytes:
        # Rendered on the event loop, a slice at a time, rather than in a worker thread: a Python thread
        # rendering competes with the loop for the GIL, and every socket call a probe makes then waits
        # up to the interpreter's switch interval (5 ms) to get it back. Slices of ~0.25 ms with a pass
        # through the loop between them delay each step of a probe by one slice at most.
        parts: list[bytes] = []
        for _ in exposition_steps(app[BOARD], app[METRICS], app[RENDERER], parts):
            await asyncio.sleep(0)
        return await asyncio.get_running_loop().run_in_executor(None, _pack, parts, gzipped)

    body = await shared(app, f"metrics gzip={gzipped}", produce)
    return await send(request, body, CONTENT_TYPE, {"Content-Encoding": "gzip"} if gzipped else None)


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    board = request.app[BOARD]
    if board.ready:
        return web.Response(text="ready\n")
    return web.Response(status=503, text=f"not ready: {board.not_ready_because}\n")


def results_document(board: Board) -> dict[str, Any]:
    published = board.current
    results = order(published.results.results)
    return {
        "schema": "lbdoctor.results/v1",
        "version": __version__,
        "role": board.role,
        "standby": board.standby,
        "node": published.node,
        "ready": board.ready,
        "generation": published.results.generation,
        "generated_at": iso(published.results.produced_at) if published.results.produced_at else None,
        "summary": summary(results),
        "results": results_json(results),
        "targets": targets_json(published.probes),
    }


async def _results(request: web.Request) -> web.StreamResponse:
    board = request.app[BOARD]

    def produce() -> bytes:
        return json.dumps(results_document(board)).encode()

    body = await shared(request.app, "results", lambda: asyncio.get_running_loop().run_in_executor(None, produce))
    return await send(request, body, "application/json; charset=utf-8")


async def _status_page(request: web.Request) -> web.StreamResponse:
    board = request.app[BOARD]

    def produce() -> bytes:
        return statuspage.render(
            board.current,
            role=board.role,
            ready=board.ready,
            not_ready_because=board.not_ready_because,
            standby=board.standby,
        ).encode()

    body = await shared(request.app, "page", lambda: asyncio.get_running_loop().run_in_executor(None, produce))
    return await send(request, body, "text/html; charset=utf-8")


class BasicAuth:
    """The toolkit's basic auth: bcrypt hashes from the web config, one bcrypt comparison at a time (off the
    loop), results cached (by digest, up to 100), unknown users compared against a fixed hash so their
    answer takes as long."""

    # bcrypt (cost 10) of a password nobody has: unknown users are checked against it.
    _FAKE = b"$2b$10$1FTxYsVAEmtIDQZ/Op3J5uRbgkP/ysH2HDGz3LDCSSDvmJWZmcp8S"
    CACHE_SIZE = 100

    def __init__(self) -> None:
        self._cache: dict[bytes, bool] = {}
        self._lock = asyncio.Lock()

    async def allows(self, users: dict[str, bytes], header: str | None) -> bool:
        credentials = _basic_credentials(header)
        if credentials is None:
            return False
        user, password = credentials
        known = user in users
        hashed = users.get(user, self._FAKE)
        key = hashlib.sha256(b"\0".join((user.encode(), hashed, password.encode()))).digest()
        found = self._cache.get(key)
        if found is None:
            async with self._lock:
                found = await asyncio.to_thread(_bcrypt_matches, password, hashed)
            if len(self._cache) >= self.CACHE_SIZE:
                del self._cache[random.choice(list(self._cache))]
            self._cache[key] = found
        return found and known


def _bcrypt_matches(password: str, hashed: bytes) -> bool:
    import bcrypt  # only when basic auth is configured: the node role's imports stay lean

    try:
        return bool(bcrypt.checkpw(password.encode(), hashed))
    except ValueError:  # a password longer than bcrypt takes (72 bytes), or a hash it cannot read
        return False


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or len(value) > 4096:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class _Bucket:
    """Go's rate.Limiter as the toolkit uses it: a token every ``interval``, at most ``burst`` saved up."""

    def __init__(self) -> None:
        self._tokens = 0.0
        self._at = time.monotonic()
        self._shape: tuple[float, int] | None = None

    def allow(self, interval: float, burst: int) -> bool:
        now = time.monotonic()
        if self._shape != (interval, burst):
            self._shape, self._tokens, self._at = (interval, burst), float(burst), now
        self._tokens = min(float(burst), self._tokens + (now - self._at) / interval)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def _guard(watched: Watched, errors: SelfMetrics) -> Any:
    auth = BasicAuth()
    bucket = _Bucket()

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        config: WebConfig = watched.current()
        if request.path not in UNGUARDED:
            if config.rate_interval > 0 and not bucket.allow(config.rate_interval, config.rate_burst):
                errors.error("web", "rate_limited")
                return web.Response(status=429, text="Too Many Requests\n")
            if config.users and not await auth.allows(dict(config.users), request.headers.get("Authorization")):
                errors.error("web", "unauthorized")
                return web.Response(status=401, text="Unauthorized\n", headers={"WWW-Authenticate": "Basic"})
        return await handler(request)

    return guard


def _headers(watched: Watched) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """The web config's response headers, on every response (errors and streamed bodies included)."""

    async def add(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(watched.current().headers)

    return add


def build_app(board: Board, metrics: SelfMetrics, options: WebOptions | None = None) -> web.Application:
    options = options or WebOptions()
    middlewares = [_guard(options.config, metrics)] if options.config is not None else []
    app = web.Application(middlewares=middlewares)
    if options.config is not None:
        app.on_response_prepare.append(_headers(options.config))
    app[BOARD] = board
    app[METRICS] = metrics
    app[RENDERER] = ProbeRenderer()
    app[OPTIONS] = options
    app[SHARED] = {}
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/api/v1/results", _results)
    app.router.add_get("/api/v1/targetgroups", _targetgroups)
    app.router.add_get("/", _status_page)
    return app


class GuardedSite(web.BaseSite):
    """An aiohttp site whose connections come through ``Listener`` (limits, TLS from the web config)."""

    def __init__(self, runner: web.BaseRunner, sockets: Sequence[socket.socket], options: WebOptions, errors: Any):
        super().__init__(runner)
        self._sockets = list(sockets)
        self._options = options
        self._errors = errors
        self.listener: Listener | None = None

    @property
    def name(self) -> str:
        scheme = "https" if self._options.config is not None and self._options.config.config.tls else "http"
        return ", ".join(f"{scheme}://{sock.getsockname()[0]}:{sock.getsockname()[1]}" for sock in self._sockets)

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        watched = self._options.config
        self.listener = Listener(
            self._sockets,
            server,
            self._options.limits,
            self._errors,
            tls=watched.tls_context if watched is not None else (lambda: None),
            allowed_sans=watched.allowed_sans if watched is not None else (lambda: None),
            san_check=san_allowed,
        )

    async def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
        await super().stop()


class _QuietBadRequests(logging.Filter):
    """aiohttp logs every malformed or oversized request with a traceback at ERROR: a client could fill the
    logs with them. They are counted (``lbdoctor_errors_total{component="web",kind="bad_request"}``) instead;
    aiohttp still answers each with a 400."""

    def __init__(self, metrics: SelfMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            self._metrics.error("web", "bad_request")
            return False
        return True


async def start(app: web.Application, addresses: Sequence[tuple[str, int]]) -> tuple[web.AppRunner, int]:
    """Serve the app on every HOST:PORT; returns the runner and the bound port (useful with port 0)."""
    quiet = _QuietBadRequests(app[METRICS])
    logging.getLogger("aiohttp.server").addFilter(quiet)

    async def unquiet(_app: web.Application) -> None:
        logging.getLogger("aiohttp.server").removeFilter(quiet)

    app.on_cleanup.append(unquiet)
    sites: list[GuardedSite] = []

    async def forget_connections(_app: web.Application) -> None:
        for site in sites:
            if site.listener is not None:
                await site.listener.wait_closed()  # after aiohttp's graceful shutdown: only leftovers remain

    app.on_cleanup.append(forget_connections)
    options = app[OPTIONS]
    # keepalive_timeout closes a connection waiting for a (complete) request head: the header timeout.
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=1.0, keepalive_timeout=options.header_timeout
    )
    await runner.setup()
    try:
        sockets = bind(addresses)
    except BaseException:
        await runner.cleanup()
        raise
    site = GuardedSite(runner, sockets, options, app[METRICS])
    sites.append(site)
    try:
        await site.start()
    except BaseException:
        for sock in sockets:
            sock.close()
        await runner.cleanup()
        raise
    return runner, int(sockets[0].getsockname()[1])
