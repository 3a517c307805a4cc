"""Process lifecycle: named, supervised tasks; signals; shutdown in stages within a time limit."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

import structlog

from exporter.backoff import Backoff
from exporter.metrics.selfmetrics import SelfMetrics

log = structlog.get_logger("lbdoctor")

RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
HEALTHY_RUN = 60.0  # a job that ran this long before failing starts its backoff short again


class Supervisor:
    """Runs long-lived jobs as named tasks. A job that raises is logged, counted and restarted after a
    jittered, growing delay; a job that returns is a bug (they are meant to run forever) and is restarted
    the same way."""

    def __init__(self, metrics: SelfMetrics) -> None:
        self._metrics = metrics
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def spawn(self, name: str, job: Callable[[], Awaitable[None]]) -> None:
        self._tasks[name] = asyncio.create_task(self._guard(name, job), name=name)

    async def _guard(self, name: str, job: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff(RESTART_DELAYS)
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await job()
                log.error("task finished unexpectedly; restarting it", task=name)
                self._metrics.error("app", "task_returned")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task failed; restarting it", task=name)
                self._metrics.error("app", "task_failed")
            if loop.time() - started >= HEALTHY_RUN:
                backoff.reset()
            await asyncio.sleep(backoff.next())

    async def stop(self, names: list[str] | None = None, timeout: float = 2.0) -> None:
        chosen = [task for name, task in self._tasks.items() if names is None or name in names]
        for task in chosen:
            task.cancel()
        if chosen:
            _done, pending = await asyncio.wait(chosen, timeout=timeout)
            for task in pending:
                log.warning("task did not stop in time; abandoning it", task=task.get_name())

    @property
    def names(self) -> list[str]:
        return list(self._tasks)


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)


async def staged_shutdown(supervisor: Supervisor, stages: list[tuple[str, list[str]]], budget: float) -> None:
    """Stop the named groups of tasks in order, sharing a total time budget."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    for label, names in stages:
        remaining = max(deadline - loop.time(), 0.1)
        log.info("shutting down", stage=label)
        await supervisor.stop(names, timeout=remaining / 2)
