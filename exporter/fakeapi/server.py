"""The fake API server's HTTP face: the REST paths the ``kubernetes`` client uses, plus fault injection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from exporter.fakeapi.selectors import SelectorError, field_selector, label_selector
from exporter.fakeapi.state import (
    KINDS,
    KINDS_BY_KEY,
    AlreadyExists,
    ClusterState,
    Conflict,
    Kind,
    NotFound,
    Obj,
    visible,
)

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>log|status))?$"
)


_SERVICE_PROXY = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<id>[^/]+)/proxy(?P<rest>/.*)?$")
_PROXY_MAX = 64 * 1024 * 1024
# Headers passed on both ways, as the API server's reverse proxy passes them (it drops the caller's
# credentials: the backend never sees the user's token).
_PROXIED_REQUEST = ("Accept", "Accept-Encoding", "If-None-Match")
_PROXIED_RESPONSE = ("Content-Type", "Content-Encoding", "ETag", "Vary", "Cache-Control", "Retry-After")
# API discovery: /api/v1 and /apis/GROUP/VERSION list the resources served there (open to every user).
_DISCOVERY = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))/?$")


@dataclass
class Fault:
    """An injected failure for requests whose path matches ``path`` (a regular expression).

    ``status`` answers with that HTTP status (and ``retry_after``); ``drop_after`` cuts a watch
    connection after that many events; ``delay`` stalls the answer (an API server answering in seconds).
    ``method`` None matches every method. ``times`` < 0 means forever. For a list answered 410 Gone
    forever: ``Fault(path, status=410, watch=False, times=-1)``; a resource failing with 500 or 403
    for minutes: the same with that status.
    """

    path: str
    status: int | None = None
    retry_after: float | None = None
    watch: bool | None = None  # None: any request; True: only watches; False: only non-watch
    drop_after: int | None = None
    delay: float = 0.0
    method: str | None = "GET"
    times: int = 1
    hits: int = 0

    def applies(self, method: str, path: str, is_watch: bool) -> bool:
        if self.times == 0 or self.method not in (None, method) or not re.search(self.path, path):
            return False
        return self.watch is None or self.watch == is_watch


# The reasons a real API server gives with these codes.
_REASONS = {403: "Forbidden", 410: "Expired", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


class FakeApiServer:
    def __init__(
        self,
        state: ClusterState | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bookmark_interval: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.state = state or ClusterState()
        self.ssl_context = ssl_context  # HTTPS, as in-cluster configuration requires
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.faults: list[Fault] = []
        self.forbidden: set[str] = set()  # plurals the caller may not list or watch
        self.requests: list[tuple[str, str]] = []  # (method, path?query) of every request, for tests
        self.request_times: list[float] = []  # the loop's time of each of them: request rates in tests
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._streams: dict[int, web.Request] = {}
        self._lists: dict[tuple[str | None, ...], tuple[int, list[Obj]]] = {}
        self._json: dict[int, tuple[Obj, bytes]] = {}  # requests are unhashable mappings

    # lifecycle --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/version", self._version)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        for address in self._runner.addresses:
            self.port = int(address[1])

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def write_kubeconfig(self, path: Path, context: str = "lbdoctor-demo") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "fake-token"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    def drop_watches(self) -> int:
        """Cut every open watch connection, as a restarting API server or a flaky load balancer does."""
        dropped = 0
        for request in list(self._streams.values()):
            if request.transport is not None:
                request.transport.abort()
                dropped += 1
        return dropped

    def inject(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    # handlers ---------------------------------------------------------------------------------
    async def _version(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"major": "1", "minor": "33", "gitVersion": "v1.33.0-lbdoctor-fake", "platform": "linux/amd64"}
        )

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def _fault(self, request: web.Request, is_watch: bool) -> Fault | None:
        for fault in self.faults:
            if fault.applies(request.method, request.path, is_watch):
                fault.hits += 1
                if fault.times > 0:
                    fault.times -= 1
                return fault
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        self.request_times.append(asyncio.get_running_loop().time())
        proxy = _SERVICE_PROXY.match(request.raw_path.split("?", 1)[0])
        if proxy is not None:
            return await self._service_proxy(request, proxy["ns"], proxy["id"], proxy["rest"] or "/")
        discovery = _DISCOVERY.match(request.path)
        if discovery is not None and request.method == "GET":
            return self._discovery("v1" if discovery["core"] else f"{discovery['group']}/{discovery['version']}")
        match = _PATH.match(request.path)
        if match is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        group_version = "v1" if match["core"] else f"{match['group']}/{match['version']}"
        kind = next((k for k in KINDS if k.group_version == group_version and k.plural == match["plural"]), None)
        if kind is None or kind.key in self.state.disabled_kinds:
            if request.method == "GET" and match["plural"] in self.forbidden and not match["name"]:
                # A real API server authorizes before it routes: a forbidden list of a CRD that is not installed
                # is a 403 too.
                return _status(403, "Forbidden", f"{match['plural']} is forbidden")
            return _status(404, "NotFound", "the server could not find the requested resource")
        is_watch = request.query.get("watch") in ("true", "1")
        fault = self._fault(request, is_watch)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                reason = _REASONS.get(fault.status, "InjectedFault")
                response = _status(fault.status, reason, f"injected fault: {fault.status}")
                if fault.retry_after is not None:
                    response.headers["Retry-After"] = str(int(fault.retry_after))
                return response
        if request.method == "GET" and kind.plural in self.forbidden and not match["name"]:
            scope = f'in the namespace "{match["ns"]}"' if match["ns"] else "at the cluster scope"
            return _status(
                403,
                "Forbidden",
                f'{kind.plural} is forbidden: User "system:serviceaccount:lbdoctor:lbdoctor" cannot list '
                f'resource "{kind.plural}" in API group "{group_version.rpartition("/")[0]}" {scope}',
            )
        namespace, name, sub = match["ns"], match["name"], match["sub"]
        try:
            if request.method == "GET" and name is None:
                if is_watch:
                    return await self._watch(request, kind, namespace, fault)
                return self._list(request, kind, namespace)
            if request.method == "GET" and sub == "log":
                return web.Response(text=self.state.logs.get((namespace or "", name or ""), ""))
            if request.method == "GET":
                return web.json_response(self.state.get(kind, namespace or "", name or ""))
            return await self._write(request, kind, namespace, name)
        except SelectorError as error:
            return _status(400, "BadRequest", str(error))
        except NotFound as error:
            return _status(404, "NotFound", str(error))
        except Conflict as error:
            return _status(409, "Conflict", str(error))
        except AlreadyExists as error:
            return _status(409, "AlreadyExists", str(error))

    async def _service_proxy(self, request: web.Request, namespace: str, ident: str, rest: str) -> web.StreamResponse:
        """The ``services/proxy`` subresource as the real API server serves it: ``[scheme:]name[:port]``, the
        port by number or by name, a random address of the Service's Endpoints that has that port and belongs
        to a pod with that IP (pkg/registry/core/service/storage ResourceLocation), then a reverse proxy.
        ``forbidden`` holding ``services/proxy`` refuses it as RBAC would without that grant."""
        fault = self._fault(request, False)
        if fault is not None and fault.status is not None:
            return _status(fault.status, _REASONS.get(fault.status, "InjectedFault"), f"injected fault: {fault.status}")
        if "services/proxy" in self.forbidden:
            return _status(
                403,
                "Forbidden",
                f'services "{ident}" is forbidden: User "jane@example.com" cannot get resource "services/proxy" '
                f'in API group "" in the namespace "{namespace}"',
            )
        if request.method != "GET":
            return _status(405, "MethodNotAllowed", f"{request.method} is not supported here")
        parts = ident.split(":")
        if len(parts) > 3:
            return _status(400, "BadRequest", f"invalid service request {ident!r}")
        scheme, name, port = ("", parts[0], "") if len(parts) == 1 else ("", *parts) if len(parts) == 2 else parts
        if scheme not in ("", "http", "https"):
            return _status(400, "BadRequest", f"invalid scheme {scheme!r}")
        try:
            service = self.state.get(KINDS_BY_KEY["v1/services"], namespace, name)
        except NotFound as error:
            return _status(404, "NotFound", str(error))
        ports = (service.get("spec") or {}).get("ports") or []
        if port.isdigit():
            named = [p.get("name", "") for p in ports if str(p.get("port")) == port]
            if not named:
                return _status(503, "ServiceUnavailable", f"no service port {port} found for service {name!r}")
            port = named[0]
        try:
            endpoints = self.state.get(KINDS_BY_KEY["v1/endpoints"], namespace, name)
        except NotFound:
            return _status(503, "ServiceUnavailable", f"no endpoints available for service {name!r}")
        candidates: list[tuple[str, int]] = []
        for subset in endpoints.get("subsets") or []:
            for endpoint_port in subset.get("ports") or []:
                if endpoint_port.get("name", "") != port:
                    continue
                for address in subset.get("addresses") or []:
                    ref = address.get("targetRef") or {}
                    try:
                        pod = self.state.get(KINDS_BY_KEY["v1/pods"], ref.get("namespace") or "", ref.get("name") or "")
                    except NotFound:
                        continue
                    ips = {p.get("ip") for p in (pod.get("status") or {}).get("podIPs") or []}
                    if address.get("ip") in ips | {(pod.get("status") or {}).get("podIP")}:
                        candidates.append((str(address["ip"]), int(endpoint_port["port"])))
        if not candidates:
            return _status(503, "ServiceUnavailable", f"no endpoints available for service {ident!r}")
        ip, target_port = random.choice(candidates)
        host = f"[{ip}]" if ":" in ip else ip
        query = f"?{request.query_string}" if request.query_string else ""
        url = f"{scheme or 'http'}://{host}:{target_port}{rest}{query}"
        headers = {key: request.headers[key] for key in _PROXIED_REQUEST if key in request.headers}
        try:
            async with (
                aiohttp.ClientSession(auto_decompress=False) as session,
                session.get(url, headers=headers, ssl=False, timeout=aiohttp.ClientTimeout(total=30)) as answer,
            ):
                body = await answer.content.read(_PROXY_MAX)
                passed = {key: answer.headers[key] for key in _PROXIED_RESPONSE if key in answer.headers}
                return web.Response(status=answer.status, body=body, headers=passed)
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            # What the real one answers when it cannot reach the endpoint.
            return _status(503, "ServiceUnavailable", f"error trying to reach service: {error}")

    def _discovery(self, group_version: str) -> web.Response:
        served = [k for k in KINDS if k.group_version == group_version and k.key not in self.state.disabled_kinds]
        if not served:
            return _status(404, "NotFound", "the server could not find the requested resource")
        return web.json_response(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": [
                    {"name": k.plural, "kind": k.kind, "namespaced": k.namespaced, "verbs": ["get", "list", "watch"]}
                    for k in served
                ],
            }
        )

    def _list(self, request: web.Request, kind: Kind, namespace: str | None) -> web.Response:
        # Paged lists of a big cluster ask for the same list once per page: keep it while nothing changes.
        cache_key = (kind.key, namespace, request.query.get("labelSelector"), request.query.get("fieldSelector"))
        cached = self._lists.get(cache_key)
        if cached is not None and cached[0] == self.state.version:
            items = cached[1]
        else:
            labels = label_selector(request.query.get("labelSelector"))
            fields = field_selector(request.query.get("fieldSelector"))
            items = self.state.select(kind, namespace, lambda o: labels(o) and fields(o))
            items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            if len(self._lists) > 32:
                self._lists.clear()
            self._lists[cache_key] = (self.state.version, items)
        start = int(request.query.get("continue") or 0)
        limit = int(request.query.get("limit") or 0)
        page = items[start : start + limit] if limit else items[start:]
        metadata: dict[str, Any] = {"resourceVersion": str(self.state.version)}
        if limit and start + limit < len(items):
            metadata["continue"] = str(start + limit)
        head = {"kind": f"{kind.kind}List", "apiVersion": kind.group_version, "metadata": metadata}
        body = json.dumps(head)[:-1].encode() + b', "items": [' + b",".join(map(self._encoded, page)) + b"]}"
        return web.Response(body=body, content_type="application/json")

    def warm(self) -> None:
        """Serialize every object now, as a long-running API server's watch cache already has."""
        for kind in KINDS:
            for obj in self.state.select(kind, None, lambda _obj: True):
                self._encoded(obj)

    def _encoded(self, obj: Obj) -> bytes:
        """An object's JSON, kept while the object is unchanged (writes replace objects, never edit them),
        as the real API server's watch cache keeps serialized objects."""
        cached = self._json.get(id(obj))
        if cached is None or cached[0] is not obj:
            if len(self._json) > 400_000:
                self._json.clear()
            cached = self._json[id(obj)] = (obj, json.dumps(obj).encode())
        return cached[1]

    async def _watch(
        self, request: web.Request, kind: Kind, namespace: str | None, fault: Fault | None
    ) -> web.StreamResponse:
        labels = label_selector(request.query.get("labelSelector"))
        fields = field_selector(request.query.get("fieldSelector"))

        def matches(obj: Mapping[str, Any]) -> bool:
            return labels(obj) and fields(obj)

        bookmarks = request.query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        since_text = request.query.get("resourceVersion") or ""
        since = int(since_text) if since_text.isdigit() and since_text != "0" else self.state.version
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if since < self.state.oldest_replayable:
            await self._send(
                response,
                "ERROR",
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "Expired",
                    "code": 410,
                    "message": f"too old resource version: {since} ({self.state.oldest_replayable})",
                },
            )
            return response
        watcher = self.state.subscribe(kind, namespace, matches)
        self._streams[id(request)] = request
        sent = 0
        last = since
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            for event in self.state.history_since(since):
                if event.kind_key == kind.key:
                    seen = visible(event, namespace, matches)
                    if seen:
                        await self._send(response, seen, event.obj)
                        sent += 1
                        if self._should_drop(request, fault, sent):
                            return response
                last = max(last, event.version)
            next_bookmark = loop.time() + self.bookmark_interval
            while not self._closing.is_set():
                now = loop.time()
                if now >= deadline:
                    break
                wait = min(deadline, next_bookmark) - now
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), timeout=max(wait, 0.0))
                except TimeoutError:
                    if bookmarks and loop.time() >= next_bookmark:
                        await self._send(
                            response,
                            "BOOKMARK",
                            {
                                "kind": kind.kind,
                                "apiVersion": kind.group_version,
                                "metadata": {"resourceVersion": str(max(last, self.state.version))},
                            },
                        )
                        next_bookmark = loop.time() + self.bookmark_interval
                    continue
                if event.version <= last:
                    continue  # already replayed from history
                last = event.version
                seen = visible(event, namespace, matches)
                if seen:
                    await self._send(response, seen, event.obj)
                    sent += 1
                    if self._should_drop(request, fault, sent):
                        return response
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.state.unsubscribe(watcher)
            self._streams.pop(id(request), None)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    @staticmethod
    def _should_drop(request: web.Request, fault: Fault | None, sent: int) -> bool:
        if fault is None or fault.drop_after is None or sent < fault.drop_after:
            return False
        if request.transport is not None:
            request.transport.abort()  # a dropped connection, not a clean end of stream
        return True

    @staticmethod
    async def _send(response: web.StreamResponse, type_: str, obj: Obj) -> None:
        await response.write(json.dumps({"type": type_, "object": obj}).encode() + b"\n")

    async def _write(self, request: web.Request, kind: Kind, namespace: str | None, name: str | None) -> web.Response:
        if request.method == "DELETE" and name:
            return web.json_response(self.state.delete(kind, namespace or "", name))
        try:
            body = await request.json()
        except ValueError:
            return _status(400, "BadRequest", "the request body is not JSON")
        if not isinstance(body, dict):
            return _status(400, "BadRequest", "the request body is not an object")
        body.setdefault("apiVersion", kind.group_version)
        body.setdefault("kind", kind.kind)
        meta = body.setdefault("metadata", {})
        if namespace:
            meta["namespace"] = namespace
        if request.method == "POST" and name is None:
            return web.json_response(self.state.create(body), status=201)
        if request.method == "PUT" and name:
            meta["name"] = name
            return web.json_response(self.state.replace(body))
        if request.method == "PATCH" and name:
            current = self.state.get(kind, namespace or "", name)
            merged = _merge(current, body)
            merged["metadata"].pop("resourceVersion", None)
            return web.json_response(self.state.replace(merged))
        return _status(405, "MethodNotAllowed", f"{request.method} is not supported here")


def _merge(base: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result
