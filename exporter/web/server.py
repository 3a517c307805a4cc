"""aiohttp application. Rendering happens in a worker thread so a scrape never stalls probing."""

from __future__ import annotations

import asyncio
import gzip
import time
from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.metrics.collectors import ProbeRenderer, render_checks, render_kube_proxy
from exporter.metrics.exposition import CONTENT_TYPE
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.report import iso, results_json, summary, targets_json
from exporter.state import Board
from exporter.web import statuspage

BOARD = web.AppKey("board", Board)
METRICS = web.AppKey("metrics", SelfMetrics)
RENDERER = web.AppKey("renderer", ProbeRenderer)


def render_metrics(board: Board, metrics: SelfMetrics, renderer: ProbeRenderer) -> bytes:
    """The whole exposition. Runs in a worker thread; reads one publication, never awaits."""
    started = time.perf_counter()
    published = board.current
    parts = [
        *render_checks(published.results),
        *renderer.render(published.probes),
        *render_kube_proxy(published.node, published.dataplane, published.results),
    ]
    metrics.cycle_duration.labels("render").set(time.perf_counter() - started)
    return "".join(parts).encode() + metrics.render()


async def _metrics(request: web.Request) -> web.Response:
    app = request.app
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "")

    def produce() -> bytes:
        body = render_metrics(app[BOARD], app[METRICS], app[RENDERER])
        return gzip.compress(body, compresslevel=1) if gzipped else body

    body = await asyncio.get_running_loop().run_in_executor(None, produce)
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
    results = published.results.results
    return {
        "schema": "lbdoctor.results/v1",
        "version": __version__,
        "role": board.role,
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
            board.current, role=board.role, ready=board.ready, not_ready_because=board.not_ready_because
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
