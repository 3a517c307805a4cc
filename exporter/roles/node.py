"""The node role: watch this node's pods and the LB objects, probe every target as the LB does, publish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import structlog

from exporter.agents import PeerClient, PeerError, fetch_targetgroups
from exporter.dataplane.monitor import DataplaneMonitor, MonitorConfig
from exporter.kube import resources
from exporter.kube.client import KubeClient
from exporter.kube.snapshots import build_snapshot
from exporter.kube.store import Changes, Store
from exporter.kube.watch import Reflector
from exporter.lb.aws_settings import DocumentError, RealHealthCheck, from_document
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.targets import ProbeDefaults
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.model.results import ResultSet
from exporter.model.snapshot import ClusterSnapshot
from exporter.probes import PROBERS
from exporter.roles.node_evaluator import NodeEvaluator
from exporter.roles.readiness import keep_readiness, record_caches
from exporter.scheduler import ProbeScheduler
from exporter.settings import Settings
from exporter.state import Board, Published

log = structlog.get_logger("lbdoctor.node")

WATCHED = (
    resources.PODS,
    resources.SERVICES,
    resources.ENDPOINT_SLICES,
    resources.INGRESSES,
    resources.INGRESS_CLASSES,
    resources.TARGET_GROUP_BINDINGS,
    resources.NODES,  # only this node's own object: its address (NodePort probes) and zone (topology hints)
    # Gateway API routes and the configuration their health checks derive from (each skipped when absent)
    resources.GATEWAY_CLASSES,
    resources.GATEWAYS,
    *resources.ROUTES,
    resources.TARGET_GROUP_CONFIGURATIONS,
    resources.LOAD_BALANCER_CONFIGURATIONS,
    resources.INGRESS_CLASS_PARAMS,  # an IngressClass's params override the target type
)
# Objects per list page. Every node agent lists every Service and EndpointSlice of the cluster: a page of 1,000
# slices is ~2 MB of JSON and ~10 MB decoded, and the next page is fetched while one is converted, so a
# smaller page keeps the agent's peak memory down (docs/performance.md, "At cluster scale").
PAGE_SIZE = 250


async def wait_any(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class NodeAgent:
    def __init__(self, settings: Settings, client: KubeClient, metrics: SelfMetrics, board: Board) -> None:
        assert settings.node_name is not None
        self.node = settings.node_name
        self._settings = settings
        self._metrics = metrics
        self._board = board
        self._cache_changed = asyncio.Event()
        self.stores = {r.name: Store(r.name, self._cache_changed) for r in WATCHED}
        self._reflectors = [
            Reflector(
                client,
                resource,
                self.stores[resource.name],
                metrics,
                field_selector=self._field_selector(resource),
                inactivity_timeout=settings.watch_inactivity_timeout_seconds,
                watch_timeout=settings.watch_timeout_seconds,
                page_size=PAGE_SIZE,
            )
            for resource in WATCHED
        ]
        self.scheduler = ProbeScheduler(
            PROBERS,
            metrics,
            concurrency=settings.probe_concurrency,
            min_interval=settings.min_probe_interval_seconds,
        )
        defaults = ProbeDefaults(
            user_agent=settings.user_agent,
            body_limit=settings.probe_body_limit_bytes,
            node_path=settings.probe_node_path,
        )
        # What was derived last lives here, not in the loop: a restarted loop re-derives from the caches at once.
        self._evaluator = NodeEvaluator(self.node, ControllerConfig.from_settings(settings), defaults, metrics)
        self._full_next = True  # derive and evaluate everything next round (first round, after a failure)
        self._generation = 0
        self._real_checks: tuple[RealHealthCheck, ...] = ()  # published by the cluster role from AWS
        self._announced = False
        self._latest: ClusterSnapshot | None = None
        self.dataplane = DataplaneMonitor(
            MonitorConfig(
                node=self.node,
                mode=settings.kube_proxy_mode,
                interval=settings.kube_proxy_interval_seconds,
                grace=settings.kube_proxy_grace_seconds,
                healthz_url=settings.kube_proxy_healthz_url or None,
                metrics_url=settings.kube_proxy_metrics_url or None,
                timeout=settings.kube_proxy_timeout_seconds,
                command_prefix=settings.kube_proxy_command_prefix,
                rules_dir=settings.kube_proxy_rules_dir,
            ),
            metrics,
            self._snapshot_when_ready,
        )

    def _field_selector(self, resource: resources.Resource) -> str | None:
        if resource is resources.PODS:
            return f"spec.nodeName={self.node}"
        if resource is resources.NODES:
            return f"metadata.name={self.node}"
        return None

    def _snapshot_when_ready(self) -> ClusterSnapshot | None:
        """The latest snapshot once every cache is synced: comparing rules with half a picture would report
        every Service not listed yet."""
        return self._latest if self._board.ready else None

    def tasks(self) -> dict[str, Callable[[], Awaitable[None]]]:
        jobs: dict[str, Callable[[], Awaitable[None]]] = {
            f"watch {reflector_name}": reflector.run
            for reflector_name, reflector in zip(self.stores, self._reflectors, strict=True)
        }
        jobs["readiness"] = self.keep_readiness
        jobs["prober"] = self.scheduler.run
        jobs["evaluator"] = self.evaluate_forever
        jobs["kube-proxy"] = self.dataplane.run
        if self._settings.cluster_role_url:
            jobs["target group settings"] = self.read_targetgroups_forever
        return jobs

    async def read_targetgroups_forever(self) -> None:
        """Forever: the real health checks the cluster role read from AWS; they override the annotations'.
        A failed read keeps the last good document (AWS settings change rarely). The answer is size-capped
        and schema-checked like every answer from the other role."""
        base = self._settings.cluster_role_url.rstrip("/")
        client = PeerClient.from_settings(self._settings)
        read = False
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    checks = from_document(await fetch_targetgroups(session, base, client))
                except PeerError as error:
                    self._metrics.error("agents", error.kind)
                    log.warning("the published target-group settings were refused", url=base, error=str(error))
                except DocumentError as error:
                    self._metrics.error("agents", "invalid_document")
                    log.warning("the published target-group settings were refused", url=base, error=str(error))
                except (aiohttp.ClientError, TimeoutError, OSError) as error:
                    self._metrics.error("agents", "targetgroups")
                    log.debug("could not read the published target-group settings", url=base, error=str(error))
                else:
                    if not read:
                        read = True
                        log.info(
                            "read the target-group settings the cluster role publishes", url=base, count=len(checks)
                        )
                    if checks != self._real_checks:
                        self._real_checks = checks
                        log.info("target-group settings from AWS applied", target_groups=len(checks))
                        self._cache_changed.set()
                await asyncio.sleep(self._settings.targetgroups_interval_seconds)

    async def close(self) -> None:
        await self.scheduler.close()

    def snapshot(self) -> ClusterSnapshot:
        self._generation += 1
        return build_snapshot(self.stores, self._generation)

    async def evaluate_forever(self) -> None:
        """Forever: after a cache, probe or kube-proxy change (debounced), evaluate what it reaches and publish.

        Incremental (exporter/roles/node_evaluator.py): a cache change re-plans the owners it touches, a
        finished probe re-evaluates its owner. Restarted by the supervisor, the loop derives and evaluates
        everything from the caches at once rather than waiting for a change or publishing an empty picture."""
        self._full_next = True  # a restarted loop may have left the evaluator half done
        if self._latest is not None:
            self._cache_changed.set()
        while True:
            await wait_any(self._cache_changed, self.scheduler.changed, self.dataplane.changed)
            await asyncio.sleep(self._settings.publish_interval_seconds)
            started = time.perf_counter()
            everything = self._full_next
            self._full_next = True  # until this round is through: one that raises leaves the evaluator half done
            if self._cache_changed.is_set() or self._latest is None or everything:
                self._cache_changed.clear()
                snapshot = self.snapshot()
                changes: dict[str, Changes] | None = {name: store.take_changes() for name, store in self.stores.items()}
                if everything:
                    changes = None
                # In a worker thread: a full derivation plans every load balancer of the cluster.
                moved = await asyncio.to_thread(self._evaluator.derive, snapshot, changes, self._real_checks)
                if moved or everything:
                    self.scheduler.set_targets(self._evaluator.targets)
                self._update_readiness()
                self._latest = snapshot
            snapshot = self._latest
            self.scheduler.changed.clear()
            self.dataplane.changed.clear()
            statuses = self.scheduler.statuses()
            dataplane = self.dataplane.report
            if dataplane.rules.seconds:
                self._metrics.cycle_duration.labels("kube_proxy").set(dataplane.rules.seconds)
            now = time.time()
            # In a worker thread: the checks are pure functions of immutable data; a full round costs about
            # 20 µs a target (0.1 s at 5,000), which on the loop would hold every due probe back that long.
            found = await asyncio.to_thread(
                self._evaluator.evaluate, snapshot, statuses, dataplane, now, everything=everything
            )
            self._full_next = False
            self._board.publish(
                Published(
                    ResultSet(snapshot.generation, now, found.results, found.rollup),
                    statuses,
                    node=self.node,
                    plans=found.plans,
                    snapshot=snapshot,
                    dataplane=dataplane,
                )
            )
            for lb in ("alb", "nlb", "tgb"):
                self._metrics.targets.labels(lb).set(sum(1 for s in statuses if s.target.lb == lb))
            self._metrics.cycle_duration.labels("evaluate").set(time.perf_counter() - started)

    async def keep_readiness(self) -> None:
        await keep_readiness(self.stores, self._metrics, self._board, self._settings.kube_stale_after_seconds)

    def _update_readiness(self) -> None:
        synced = record_caches(self.stores, self._metrics, self._board, self._settings.kube_stale_after_seconds)
        if synced and not self._announced:
            self._announced = True
            log.info("all caches synced; results are live", node=self.node)
