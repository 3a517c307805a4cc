"""aiohttp application. /metrics renders in short slices on the loop, the other pages in a worker thread;
either way a request never stalls probing for long."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.aws.metrics import render_aws
from exporter.checks.causes import order
from exporter.metrics.collectors import ProbeRenderer, check_steps, kube_proxy_steps
from exporter.metrics.exposition import CONTENT_TYPE
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.report import iso, results_json, summary, targets_json
from exporter.state import Board, Published
from exporter.web import statuspage

BOARD = web.AppKey("board", Board)
METRICS = web.AppKey("metrics", SelfMetrics)
RENDERER = web.AppKey("renderer", ProbeRenderer)


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
        check_steps(published.results, text),
        renderer.steps(published.probes, text),
        kube_proxy_steps(published.node, published.dataplane, published.results, text),
        _aws_steps(published, text),
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
        out.extend(render_aws(published.aws.targets, published.aws.aws.api_requests))
    yield


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


def _pack(parts: list[bytes], gzipped: bool) -> bytes:
    # Runs in a worker thread: bytes.join and zlib both release the GIL while they copy and compress
    # megabytes, so this does not compete with the event loop (str.join and str.encode would).
    body = b"".join(parts)
    return gzip.compress(body, compresslevel=1) if gzipped else body


async def _metrics(request: web.Request) -> web.Response:
    app = request.app
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
    # Rendered on the event loop, a slice at a time, rather than in a worker thread: a Python thread
    # rendering competes with the loop for the GIL, and every socket call a probe makes then waits
    # up to the interpreter's switch interval (5 ms) to get it back. Slices of ~0.25 ms with a pass
    # through the loop between them delay each step of a probe by one slice at most.
    parts: list[bytes] = []
    for _ in exposition_steps(app[BOARD], app[METRICS], app[RENDERER], parts):
        await asyncio.sleep(0)
    body = await asyncio.get_running_loop().run_in_executor(None, _pack, parts, gzipped)
    headers = {"Content-Type": CONTENT_TYPE}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)


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


async def _results(request: web.Request) -> web.Response:
    board = request.app[BOARD]
    document = await asyncio.get_running_loop().run_in_executor(None, results_document, board)
    return web.json_response(document)


async def _status_page(request: web.Request) -> web.Response:
    board = request.app[BOARD]

    def produce() -> str:
        return statuspage.render(
            board.current,
            role=board.role,
            ready=board.ready,
            not_ready_because=board.not_ready_because,
            standby=board.standby,
        )

    html = await asyncio.get_running_loop().run_in_executor(None, produce)
    return web.Response(text=html, content_type="text/html")


def build_app(board: Board, metrics: SelfMetrics) -> web.Application:
    app = web.Application()
    app[BOARD] = board
    app[METRICS] = metrics
    app[RENDERER] = ProbeRenderer()
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/api/v1/results", _results)
    app.router.add_get("/api/v1/targetgroups", _targetgroups)
    app.router.add_get("/", _status_page)
    return app


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve the app; returns the runner and the bound port (useful with port 0)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = port
    for address in runner.addresses:
        bound = int(address[1])
    return runner, bound
