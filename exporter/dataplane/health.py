"""Ask kube-proxy how it is: ``/healthz`` (port 10256), its sync metrics and ``/proxyMode`` (port 10249).

Adapter (docs/kube-proxy.md §9). Never raises: an unreachable endpoint is a field of the
answer. Only the two sync timestamps are taken from the metrics text, through prometheus_client's
parser, so a large /metrics page costs little.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from exporter.dataplane.report import KubeProxyHealth

LAST_SYNC = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
LAST_QUEUED = "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"
BODY_LIMIT = 8 * 1024 * 1024


def _why(error: BaseException) -> str:
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    if isinstance(error, aiohttp.ClientConnectorError):
        if isinstance(error.os_error, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect: {error.os_error.strerror or error.os_error}"
    return f"{type(error).__name__}: {error}"


def sync_timestamps(text: str) -> tuple[dict[str, float], dict[str, float]]:
    """Last-sync and last-queued timestamps per IP family (the label value; "" before kube-proxy 1.33)."""
    wanted = [
        line
        for line in text.splitlines()
        if line.startswith((LAST_SYNC, LAST_QUEUED, f"# TYPE {LAST_SYNC} ", f"# TYPE {LAST_QUEUED} "))
    ]
    synced: dict[str, float] = {}
    queued: dict[str, float] = {}
    for family in text_string_to_metric_families("\n".join(wanted) + "\n"):
        for sample in family.samples:
            key = next((v for v in sample.labels.values() if v in ("IPv4", "IPv6")), "")
            if sample.name == LAST_SYNC:
                synced[key] = sample.value
            elif sample.name == LAST_QUEUED:
                queued[key] = sample.value
    return synced, queued


def sync_lag(synced: dict[str, float], queued: dict[str, float]) -> float:
    """How far queued changes are ahead of the last successful sync, worst family first (0: caught up)."""
    lags = [queued[key] - synced.get(key, 0.0) for key in queued]
    return max([0.0, *lags])


def _mode_url(metrics_url: str) -> str:
    parts = urlsplit(metrics_url)
    return urlunsplit((parts.scheme, parts.netloc, "/proxyMode", "", ""))


async def _get(session: aiohttp.ClientSession, url: str, timeout: float) -> tuple[int, str]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False) as response:
        body = await response.content.read(BODY_LIMIT)
        return response.status, body.decode("utf-8", "replace")


async def check_health(
    session: aiohttp.ClientSession,
    healthz_url: str | None,
    metrics_url: str | None,
    *,
    timeout: float = 5.0,
    want_mode: bool = False,
    clock: Callable[[], float] = time.time,
) -> KubeProxyHealth:
    now = clock()
    reachable, healthy, code, detail, eligible = False, None, None, "not checked", None
    if healthz_url:
        try:
            code, body = await _get(session, healthz_url, timeout)
            reachable = True
            healthy = code == 200
            detail, eligible = _healthz_detail(code, body)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            detail = _why(error)
    last_sync = last_queued = lag = None
    metrics_detail = "" if metrics_url else "not configured"
    mode = None
    if metrics_url:
        try:
            status, text = await _get(session, metrics_url, timeout)
            if status != 200:
                metrics_detail = f"{metrics_url} answered {status}"
            else:
                synced, queued = await asyncio.to_thread(sync_timestamps, text)
                if synced or queued:
                    last_sync = min(synced.values(), default=None)  # the family furthest behind
                    last_queued = max(queued.values(), default=None)
                    lag = sync_lag(synced, queued)
                else:
                    metrics_detail = f"{metrics_url} has no {LAST_SYNC}"
            if want_mode:
                status, text = await _get(session, _mode_url(metrics_url), timeout)
                mode = text.strip() if status == 200 and text.strip() else None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            metrics_detail = f"{metrics_url}: {_why(error)}"
    return KubeProxyHealth(
        checked_at=now,
        healthz_url=healthz_url or None,
        reachable=reachable,
        healthy=healthy,
        status_code=code,
        detail=detail,
        node_eligible=eligible,
        metrics_url=metrics_url or None,
        metrics_detail=metrics_detail,
        last_sync=last_sync,
        last_queued=last_queued,
        sync_lag=lag,
        proxy_mode=mode,
    )


def _healthz_detail(code: int, body: str) -> tuple[str, bool | None]:
    """A short account of kube-proxy's /healthz answer, and its nodeEligible flag when present."""
    try:
        document = json.loads(body)
    except ValueError:
        return f"HTTP {code}", None
    if not isinstance(document, dict):
        return f"HTTP {code}", None
    eligible = document.get("nodeEligible")
    parts = [f"HTTP {code}"]
    if "lastUpdated" in document:
        parts.append(f"lastUpdated {document['lastUpdated']}")
    if "currentTime" in document:
        parts.append(f"currentTime {document['currentTime']}")
    return ", ".join(parts), eligible if isinstance(eligible, bool) else None
