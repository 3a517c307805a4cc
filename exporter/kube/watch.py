"""List, then watch from the list's resourceVersion; bookmarks, relist on 410 Gone, backoff on errors.

The loop is kept thin; one list and one watch session are separate methods so tests can drive them.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

import aiohttp
import structlog

from exporter.backoff import DEFAULT_DELAYS, Backoff
from exporter.kube.client import ApiError, KubeClient
from exporter.kube.resources import Resource
from exporter.kube.store import Store

log = structlog.get_logger("lbdoctor.kube")

DEFAULT_BACKOFF = DEFAULT_DELAYS


class WatchTelemetry(Protocol):
    def watch_started(self, resource: str) -> None: ...
    def watch_restarted(self, resource: str, reason: str) -> None: ...
    def error(self, component: str, kind: str) -> None: ...


async def served(client: KubeClient, resource: Resource) -> bool:
    """Whether the API server serves the resource at all, from discovery (open to every authenticated user).
    An unauthorized list is answered 403 before the server looks whether the resource exists, so a CRD that
    is not installed and a CRD RBAC hides look the same; discovery tells them apart. When discovery itself
    fails, the resource is assumed served (and so reported forbidden, not absent)."""
    path = "/api/v1" if resource.group_version == "v1" else f"/apis/{resource.group_version}"
    try:
        found = await client.get(path, timeout=10.0)
    except ApiError as error:
        return error.status != 404
    except (aiohttp.ClientError, TimeoutError, OSError):
        return True
    plural = resource.plural or resource.name
    listed = found.get("resources")
    return not isinstance(listed, list) or any(isinstance(r, dict) and r.get("name") == plural for r in listed)


class ResourceGone(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class Reflector:
    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        store: Store,
        telemetry: WatchTelemetry,
        *,
        field_selector: str | None = None,
        label_selector: str | None = None,
        namespace: str | None = None,
        keep: Callable[[Any], bool] | None = None,
        inactivity_timeout: float = 120.0,
        watch_timeout: int = 300,
        page_size: int = 1000,
        absent_recheck: float = 300.0,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
    ) -> None:
        self._client = client
        self._resource = resource
        self._store = store
        self._telemetry = telemetry
        self._field_selector = field_selector
        self._label_selector = label_selector
        self._namespace = namespace
        self._keep = keep  # drops objects this process does not own (sharding by namespace)
        self._inactivity_timeout = inactivity_timeout
        self._watch_timeout = watch_timeout
        self._page_size = page_size
        self._absent_recheck = absent_recheck
        self._backoff = Backoff(backoff)
        telemetry.watch_started(resource.name)

    def _query(self) -> dict[str, str]:
        query = {}
        if self._field_selector:
            query["fieldSelector"] = self._field_selector
        if self._label_selector:
            query["labelSelector"] = self._label_selector
        return query

    def _path(self) -> str:
        return self._resource.path(self._namespace)

    async def run(self) -> None:
        """Forever: keep the store in step with the API server.

        Every failure path waits a jittered, growing delay (``exporter.backoff``), 410 Gone included:
        the first one relists at once, as client-go does, but a list answered 410 again and again slows
        down instead of spinning. The delay starts short again at the first watch event after a
        failure, not only when a watch session ends cleanly.
        """
        version: str | None = None
        while True:
            verb = "list" if version is None else "watch"
            try:
                if version is None:
                    version = await self.list_once()
                version = await self.watch_once(version)
            except ResourceGone:
                self._restarted("expired")
                version = None
                await self._expired()
            except ApiError as error:
                version = await self._api_error(error, version, verb)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
                self._store.error = f"{type(error).__name__}: {error}"
                self._restarted(_error_kind(error))
                await asyncio.sleep(self._backoff.next())
            finally:
                self._store.connected = False

    async def _expired(self) -> None:
        """After 410 Gone: relist at once the first time, back off when it repeats."""
        if self._backoff.failures:
            await asyncio.sleep(self._backoff.next())
        else:
            self._backoff.failures += 1

    async def _api_error(self, error: ApiError, version: str | None, verb: str) -> str | None:
        """Wait as the error deserves; returns the version to resume from (None: list again)."""
        if error.status == 403 and self._resource.optional and not await served(self._client, self._resource):
            error = ApiError(404, "NotFound", error.message)  # RBAC answers before routing: it is not there at all
        if error.status == 404 and self._resource.optional:
            if not self._store.absent:
                log.info("resource not served; skipping it", resource=self._resource.name)
            self._store.mark_absent()
            await asyncio.sleep(self._absent_recheck * random.uniform(0.8, 1.2))
            return None
        if error.status == 410:
            self._restarted("expired")
            await self._expired()
            return None
        if error.status == 401:
            # The token expired or was revoked (a deleted pod or ServiceAccount). The client reads the token
            # file again before the next attempt, so a rotated token recovers on the retry.
            log.warning(
                "the API server rejected lbdoctor's credentials (401 Unauthorized): is the service-account"
                " token expired or revoked?",
                resource=self._resource.name,
                verb=verb,
                error=error.message,
            )
            self._telemetry.error("kube", "unauthorized")
            self._telemetry.watch_restarted(self._resource.name, "unauthorized")
            self._store.error = f"{verb} {self._resource.name}: {error.status} {error.reason}"
            await asyncio.sleep(self._backoff.next(error.retry_after))
            return version
        if error.status == 403:
            if not self._store.forbidden:
                log.warning(
                    "not allowed to list; checks needing it report unknown",
                    resource=self._resource.name,
                    verb=verb,
                    error=error.message,
                )
                self._telemetry.error("kube", "forbidden")
            self._store.mark_forbidden(f"{error.status} {error.reason}: {error.message}")
            await asyncio.sleep(self._absent_recheck / 5 * random.uniform(0.8, 1.2))
            return None
        self._store.error = f"{error.status} {error.reason}: {error.message}"
        self._restarted(f"http_{error.status}")
        await asyncio.sleep(self._backoff.next(error.retry_after))
        return version

    def _restarted(self, reason: str) -> None:
        self._telemetry.watch_restarted(self._resource.name, reason)
        if reason != "expired":
            self._telemetry.error("kube", reason)
        log.warning("watch restarted", resource=self._resource.name, reason=reason, last_error=self._store.error)

    async def list_once(self) -> str:
        """One complete (paged) list into the store; returns the list's resourceVersion.

        The next page is requested before this one is converted, so the API server prepares it while
        lbdoctor works (conversion is the client's main cost on a 100,000-pod cluster).
        """
        items: list[tuple[str, Any]] = []
        query = self._query()
        query["limit"] = str(self._page_size)
        path = self._path()
        pending = asyncio.ensure_future(self._client.get(path, dict(query), timeout=120.0))
        try:
            while True:
                page = await pending
                metadata = page.get("metadata") or {}
                token = metadata.get("continue")
                if token:
                    pending = asyncio.ensure_future(
                        self._client.get(path, {**query, "continue": str(token)}, timeout=120.0)
                    )
                for raw in page.get("items") or []:
                    converted = self._convert(raw)
                    if converted is not None:
                        items.append(converted)
                if not token:
                    break
                await asyncio.sleep(0)  # let the next page's request go out
        finally:
            if not pending.done():
                pending.cancel()
        first = not self._store.synced
        self._store.replace(items)
        if first:
            log.info("cache synced", resource=self._resource.name, objects=len(items))
        return str(metadata.get("resourceVersion") or "")

    async def watch_once(self, version: str) -> str:
        """One watch session; returns the resourceVersion to resume from when the server ends it."""
        query = self._query()
        query.update(
            {
                "watch": "true",
                "resourceVersion": version,
                "allowWatchBookmarks": "true",
                # Spread session lengths like client-go does, so watches do not all renew together.
                "timeoutSeconds": str(int(self._watch_timeout * random.uniform(1.0, 2.0))),
            }
        )
        events = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with self._client.stream(self._path(), query, self._inactivity_timeout) as content:
            self._store.error = None
            async for line in _lines(content):
                version = self._apply(json.loads(line), version)
                if not events:
                    # The watch works: the cache follows every change while the stream stays open, and
                    # the next failure starts the backoff short again.
                    self._backoff.reset()
                    self._store.connected = True
                events += 1
                self._store.current()
        if not events and loop.time() - started < 1.0:
            # An empty stream that ends at once: do not spin on it.
            raise aiohttp.ServerDisconnectedError("watch ended immediately without events")
        return version

    def _apply(self, event: Any, version: str) -> str:
        if not isinstance(event, dict):
            raise ValueError("watch event is not an object")
        kind = event.get("type")
        found = event.get("object")
        raw: dict[str, Any] = found if isinstance(found, dict) else {}
        if kind == "ERROR":
            code = raw.get("code")
            if code == 410:
                raise ResourceGone()
            raise ApiError(int(code or 500), str(raw.get("reason") or "WatchError"), str(raw.get("message") or ""))
        new_version = str((raw.get("metadata") or {}).get("resourceVersion") or version)
        if kind == "BOOKMARK":
            return new_version
        converted = self._convert(raw)
        if converted is None:
            return new_version
        key, item = converted
        if kind == "DELETED":
            self._store.delete(key)
        elif kind in ("ADDED", "MODIFIED"):
            self._store.upsert(key, item)
        else:
            log.debug("unknown watch event skipped", resource=self._resource.name, type=kind)
        return new_version

    def _convert(self, raw: Any) -> tuple[str, Any] | None:
        try:
            item = self._resource.convert(raw)
        except Exception:  # one odd object must not stop the watch
            self._telemetry.error("kube", "convert")
            log.exception("object skipped: could not read it", resource=self._resource.name)
            return None
        if self._keep is not None and not self._keep(item):
            return None
        return item.meta.key, item


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Newline-delimited JSON without aiohttp's line-length limit (big objects make long lines)."""
    pending = b""
    while True:
        chunk = await content.readany()
        if not chunk:
            if pending.strip():
                yield pending
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield line


def _error_kind(error: BaseException) -> str:
    if isinstance(error, TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout"
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "disconnected"
    if isinstance(error, aiohttp.ClientConnectionError | OSError):
        return "unreachable"
    if isinstance(error, ValueError):
        return "invalid_response"
    return "error"
