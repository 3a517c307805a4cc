"""One active cluster-role replica through a coordination.k8s.io Lease, with client-go's semantics.

Written here rather than taken from ``kubernetes.aio.leaderelection``: in kubernetes 37.0.1 its
LeaseLock passes ``pretty=True`` to a method whose validation wants a string, so it can never
create a Lease. The algorithm is the usual one: the holder renews every ``retry`` seconds and steps
down when it cannot renew within ``renew_deadline``; a candidate takes over once the record it
observes has not changed for ``lease_duration``. On shutdown the leader releases the Lease so a
standby takes over at once instead of after a full lease duration: ``release()`` is the daemon's own
shutdown stage with its own deadline, and writes the Lease it last wrote (one call) rather than
reading it first, so an API server answering in seconds still sees it released.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog

from exporter.kube.client import ApiError, KubeClient
from exporter.telemetry import ErrorSink

log = structlog.get_logger("lbdoctor.leader")


def default_identity() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Runs the election forever; ``leading`` says whether this replica is the active one."""

    def __init__(
        self,
        client: KubeClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: float,
        on_change: Callable[[bool], None],
        errors: ErrorSink | None = None,
    ) -> None:
        self._client = client
        self._path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self._collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self._name = name
        self._namespace = namespace
        self.identity = identity
        self._duration = lease_duration
        # client-go's proportions: renew deadline 2/3 of the lease, retry every 2/15 of it.
        self._renew_deadline = lease_duration * 2 / 3
        self._retry = max(lease_duration * 2 / 15, 0.2)
        self._on_change = on_change
        self._errors = errors
        self._denied: str | None = None  # the last RBAC refusal, so it is logged once, not every retry
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._held: dict[str, Any] | None = None  # the Lease as this replica last wrote it
        self.leading = False

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info("leadership changed", leading=leading, identity=self.identity, lease=self._name)
            self._on_change(leading)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_renewal = loop.time()
        try:
            while True:
                try:
                    held = await self.try_acquire_or_renew()
                except ApiError as error:
                    self._failed(error)
                    held = False
                except (aiohttp.ClientError, OSError, TimeoutError) as error:
                    log.debug("lease attempt failed", error=str(error))
                    held = False
                else:
                    self._denied = None
                if held:
                    last_renewal = loop.time()
                    self._set(True)
                elif self.leading and loop.time() - last_renewal > self._renew_deadline:
                    log.warning("could not renew the lease in time; stepping down", lease=self._name)
                    self._held = None
                    self._set(False)
                await asyncio.sleep(self._retry)
        finally:
            self._set(False)  # the Lease stays held (``_held``) until ``release()``

    def _failed(self, error: ApiError) -> None:
        """A refused Lease call. RBAC refusals (401/403) are loud: this replica can never lead until they
        are fixed, and a standby that stays quiet would look healthy while nothing publishes."""
        if error.status not in (401, 403):
            log.debug("lease attempt failed", error=str(error))
            return
        if self._errors is not None:
            self._errors.error("leader", "unauthorized" if error.status == 401 else "forbidden")
        if error.message != self._denied:
            self._denied = error.message
            needs = (
                "RBAC allows get, create and update on it"
                if error.status == 403
                else "the API server accepts its credentials again (is the service-account token expired?)"
            )
            log.warning(
                f"cannot take part in leader election: the API server refuses the Lease; this replica stays a"
                f" standby until {needs}",
                lease=f"{self._namespace}/{self._name}",
                status=error.status,
                error=error.message,
            )

    async def try_acquire_or_renew(self) -> bool:
        loop = asyncio.get_running_loop()
        try:
            lease = await self._client.get(self._path, timeout=self._retry * 2)
        except ApiError as error:
            if error.status != 404:
                raise
            self._held = await self._client.request(
                "POST", self._collection, body=self._lease(None), timeout=self._retry * 2
            )
            return True
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._observed:
            self._observed, self._observed_at = record, loop.time()
        duration = float(spec.get("leaseDurationSeconds") or self._duration)
        if holder and holder != self.identity and loop.time() - self._observed_at < duration:
            self._held = None
            return False  # someone else holds a lease that has not expired
        try:
            self._held = await self._client.request("PUT", self._path, body=self._lease(lease), timeout=self._retry * 2)
        except ApiError as error:
            if error.status == 409:
                return False  # another candidate updated it first
            raise
        return True

    def _lease(self, current: dict[str, Any] | None) -> dict[str, Any]:
        now = _now()
        spec: dict[str, Any] = dict((current or {}).get("spec") or {})
        taking_over = spec.get("holderIdentity") != self.identity
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=round(self._duration), renewTime=now)
        if taking_over:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if current else 0)
        metadata: dict[str, Any] = {"name": self._name, "namespace": self._namespace}
        if current is not None:
            metadata["resourceVersion"] = (current.get("metadata") or {}).get("resourceVersion")
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    async def release(self, timeout: float) -> None:
        """Give the Lease up on shutdown so a standby need not wait for it to expire; never takes longer
        than ``timeout``. Call it after ``run()`` has stopped, so nothing renews it again."""
        held, self._held = self._held, None
        if held is None:
            return
        try:
            await asyncio.wait_for(self._release(held, timeout), timeout)
            log.info("released the lease", lease=self._name)
        except TimeoutError:
            log.warning("could not release the lease in time; a standby takes over when it expires", timeout=timeout)
        except (ApiError, aiohttp.ClientError, OSError) as error:
            log.warning("could not release the lease", error=str(error))

    async def _release(self, lease: dict[str, Any], timeout: float) -> None:
        for attempt in range(2):
            body = self._lease(lease)
            body["spec"].update(holderIdentity="", leaseDurationSeconds=1)
            try:
                await self._client.request("PUT", self._path, body=body, timeout=timeout)
                return
            except ApiError as error:
                if error.status != 409 or attempt:
                    raise
            # Written since (a renewal cut short by the shutdown): read it, and release it if still ours.
            lease = await self._client.get(self._path, timeout=timeout)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
