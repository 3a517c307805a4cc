"""A thin layer over the ``kubernetes.aio`` client: config loading, authenticated GETs and watch streams.

lbdoctor reads raw JSON rather than the generated models: it converts only the fields the checks
need, which keeps big clusters cheap, and it lets one code path serve core resources and CRDs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from kubernetes.aio import client as k8s
from kubernetes.aio import config as k8s_config


class ConfigError(Exception):
    """No usable cluster configuration (kubeconfig missing or broken, context unknown)."""


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def _error(response: aiohttp.ClientResponse) -> ApiError:
    text = (await response.content.read(64 * 1024)).decode("utf-8", "replace")
    message = text.strip()
    reason = response.reason or ""
    try:
        status = json.loads(text)
        if isinstance(status, dict):
            message = str(status.get("message") or message)
            reason = str(status.get("reason") or reason)
    except ValueError:
        pass
    return ApiError(response.status, reason, message[:300], _retry_after(response.headers))


def _kubeconfig_path(kubeconfig: str | None, context: str | None) -> str | None:
    """The kubeconfig to load, or None for in-cluster credentials (as kubectl decides)."""
    default = os.path.expanduser(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if not (kubeconfig or context or (not in_cluster and os.path.exists(default))):
        if not in_cluster:
            raise ConfigError(f"no kubeconfig found ({default} does not exist) and not running in a pod")
        return None
    path = kubeconfig or default
    if not os.path.exists(path):
        raise ConfigError(f"kubeconfig {path} does not exist")
    return path


def kubeconfig_cluster(kubeconfig: str | None, context: str | None) -> str | None:
    """The cluster name a kubeconfig context points at (for EKS, often the cluster's ARN); None when
    it cannot be read. Best effort: it only helps find defaults."""
    import yaml

    try:
        path = _kubeconfig_path(kubeconfig, context)
        if path is None:
            return None
        with open(path) as handle:
            config = yaml.safe_load(handle) or {}
        wanted = context or config.get("current-context")
        for entry in config.get("contexts") or []:
            if entry.get("name") == wanted:
                return str((entry.get("context") or {}).get("cluster") or "") or None
    except (ConfigError, OSError, yaml.YAMLError, AttributeError):
        return None
    return None


class TokenFile:
    """The pod's service-account token, re-read when the kubelet rotates it (the client alone re-reads it
    once a minute) and at once after the API server rejected it (401)."""

    def __init__(self, path: str, check_every: float = 10.0) -> None:
        self._path = path
        self._check_every = check_every
        self._stamp: tuple[int, int, int] | None = None
        self._next = 0.0

    def invalidate(self) -> None:
        self._stamp, self._next = None, 0.0

    def __call__(self, configuration: Any) -> None:
        """The client's ``refresh_api_key_hook``: runs before every request."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._check_every
        try:
            found = os.stat(self._path)
            stamp = (found.st_ino, found.st_mtime_ns, found.st_size)
            if stamp == self._stamp:
                return
            with open(self._path) as handle:
                token = handle.read().strip()
        except OSError:
            return  # keep the token we have; the next request tries again
        if token:
            self._stamp = stamp
            configuration.api_key["BearerToken"] = f"bearer {token}"


class KubeClient:
    def __init__(self, api: Any, token_file: TokenFile | None = None) -> None:
        self._api = api
        self._token_file = token_file

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeClient:
        """From a kubeconfig when one is given or found, else the pod's service account."""
        token_file: TokenFile | None = None
        try:
            path = _kubeconfig_path(kubeconfig, context)
            if path is not None:
                api = await k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=path, context=context, persist_config=False
                )
            else:
                from kubernetes.aio.config.incluster_config import SERVICE_TOKEN_FILENAME

                configuration = k8s.Configuration()
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                token_file = TokenFile(SERVICE_TOKEN_FILENAME)
                configuration.refresh_api_key_hook = token_file  # type: ignore[assignment]
                api = k8s.ApiClient(configuration)
        except ConfigError:
            raise
        except Exception as error:  # the client raises bare Exceptions and ConfigExceptions alike
            text = str(error).strip()
            raise ConfigError(text.splitlines()[0] if text else repr(error)) from error
        return cls(api, token_file)

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    async def close(self) -> None:
        await self._api.close()

    async def _open(
        self, method: str, path: str, query: Mapping[str, str], timeout: aiohttp.ClientTimeout, body: Any = None
    ) -> aiohttp.ClientResponse:
        _, url, headers, _, _ = await self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query.items()),
            header_params={"Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        rest = await self._api.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)
        response: aiohttp.ClientResponse = rest.response
        if response.status == 401 and self._token_file is not None:
            self._token_file.invalidate()  # the kubelet may have rotated it: read it again before the next request
        if response.status >= 400:
            error = await _error(response)
            response.release()
            raise error
        return response

    async def request(
        self, method: str, path: str, query: Mapping[str, str] | None = None, body: Any = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        response = await self._open(method, path, query or {}, aiohttp.ClientTimeout(total=timeout), body)
        try:
            payload = await response.json(content_type=None)
        finally:
            response.release()
        if not isinstance(payload, dict):
            raise ApiError(response.status, "InvalidResponse", "the API server did not answer with an object")
        return payload

    async def get(self, path: str, query: Mapping[str, str] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        return await self.request("GET", path, query, timeout=timeout)

    async def get_text(self, path: str, query: Mapping[str, str] | None = None, timeout: float = 30.0) -> str:
        response = await self._open("GET", path, query or {}, aiohttp.ClientTimeout(total=timeout))
        try:
            return (await response.content.read(1024 * 1024)).decode("utf-8", "replace")
        finally:
            response.release()

    @asynccontextmanager
    async def stream(
        self, path: str, query: Mapping[str, str], read_timeout: float
    ) -> AsyncIterator[aiohttp.StreamReader]:
        """A watch stream; ``read_timeout`` bounds silence between lines, not the whole stream."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=read_timeout)
        response = await self._open("GET", path, query, timeout)
        try:
            yield response.content
        finally:
            response.close()
