"""Adapter between lbdoctor's own processes: the cluster role reads the node agents' probe states, the
node agents read the real target-group settings the cluster role publishes.

Both ride the JSON APIs each role already serves (``/api/v1/results``, ``/api/v1/targetgroups``);
failures are counted and the last good answer is kept, so one unreachable agent never stops a round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp
import structlog

from exporter.lb.targets import TargetStatus
from exporter.model.results import CheckResult
from exporter.report import results_from_json, targets_from_json
from exporter.telemetry import ErrorSink

log = structlog.get_logger("lbdoctor.agents")


async def _get_json(session: aiohttp.ClientSession, url: str, timeout: float) -> Any:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
        if response.status != 200:
            raise aiohttp.ClientResponseError(response.request_info, (), status=response.status)
        return await response.json(content_type=None)


class ProbeFeed:
    """The probe states of every node agent, fetched concurrently; an agent that fails keeps its last
    answer for ``stale_after`` seconds, then drops out."""

    def __init__(self, errors: ErrorSink, *, timeout: float = 5.0, stale_after: float = 120.0) -> None:
        self._errors = errors
        self._timeout = timeout
        self._stale_after = stale_after
        self._last: dict[str, tuple[float, tuple[TargetStatus, ...]]] = {}
        self._results: dict[str, tuple[CheckResult, ...]] = {}  # each agent's failing and warning results
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, bases: Iterable[str]) -> tuple[TargetStatus, ...]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        loop = asyncio.get_running_loop()
        wanted = sorted(set(bases))

        async def one(base: str) -> None:
            assert self._session is not None
            try:
                document = await _get_json(self._session, f"{base}/api/v1/results", self._timeout)
                self._last[base] = (loop.time(), targets_from_json(document.get("targets")))
                self._results[base] = results_from_json(document.get("results"))
            except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError) as error:
                self._errors.error("agents", "unreachable")
                log.debug("node agent unreachable", agent=base, error=str(error))

        await asyncio.gather(*(one(base) for base in wanted))
        now = loop.time()
        for base in [b for b in self._last if b not in wanted or now - self._last[b][0] > self._stale_after]:
            del self._last[base]
            self._results.pop(base, None)
        return tuple(status for _, statuses in self._last.values() for status in statuses)

    def results(self) -> tuple[CheckResult, ...]:
        """The node agents' failing and warning results from the last ``fetch``: the causal rules link the
        cluster role's findings with them (a security group that explains a node's failing probe)."""
        return tuple(result for base in self._last for result in self._results.get(base, ()))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def fetch_targetgroups(session: aiohttp.ClientSession, base: str, timeout: float = 5.0) -> Any:
    """The cluster role's ``lbdoctor.targetgroups/v1`` document; raises on any failure."""
    return await _get_json(session, f"{base}/api/v1/targetgroups", timeout)


def agent_bases(pod_ips: Sequence[str], port: int) -> list[str]:
    return [f"http://[{ip}]:{port}" if ":" in ip else f"http://{ip}:{port}" for ip in pod_ips]
