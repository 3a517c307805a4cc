"""The real daemon, in this process, against the in-process fake API server: what the fault tests drive.

In-process so a test can break one part of it (a check that raises) and watch the rest; the tests that
need a separate process (SIGTERM, peak RSS) start ``python -m exporter run`` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from exporter import daemon
from exporter.demo.apps import App
from exporter.fakeapi import FakeApiServer
from exporter.settings import Settings


@contextlib.asynccontextmanager
async def running(api: FakeApiServer, tmp_path: Path, **settings: Any) -> AsyncIterator[str]:
    """The daemon with these settings; yields its base URL; stops it (exit code 0) on the way out."""
    settings.setdefault("listen", "127.0.0.1:0")
    settings.setdefault("publish_interval_seconds", 0.1)
    settings.setdefault("log_level", "warning")
    config = Settings(kubeconfig=str(api.write_kubeconfig(tmp_path / "kubeconfig")), **settings)
    stop = asyncio.Event()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    run = asyncio.create_task(daemon.run(config, stop=stop, on_ready=bound.set_result))
    try:
        yield f"http://127.0.0.1:{await asyncio.wait_for(bound, 30)}"
    finally:
        stop.set()
        assert await asyncio.wait_for(run, 30) == 0


@contextlib.asynccontextmanager
async def serving(apps: list[App]) -> AsyncIterator[None]:
    for app in apps:
        await app.start()
    try:
        yield
    finally:
        for app in apps:
            await app.stop()


async def get(url: str, timeout: float = 10) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response,
    ):
        return response.status, await response.text()


async def results(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/api/v1/results") as response:
        document: dict[str, Any] = await response.json()
        return document


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float, every: float = 0.2) -> float:
    """Seconds until ``condition`` held; fails the test after ``timeout``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not await condition():
        assert loop.time() - started < timeout, f"condition not met within {timeout} s"
        await asyncio.sleep(every)
    return loop.time() - started


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of an exposition, or None."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    head = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(head):
            return float(line[len(head) :])
    return None
