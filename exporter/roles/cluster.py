"""The cluster role: watch what the object checks need cluster-wide, evaluate incrementally, publish.

Two replicas run; one leads through a Lease. Both keep their caches warm (a standby takes over
without relisting), but only the leader evaluates, reads the controller's logs and publishes check
series. ``shard``/``total_shards`` split namespaces by a stable hash for very large clusters.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp
import structlog

from exporter.agents import Agent, PeerClient, PeerError, ProbeFeed, agent_base
from exporter.backoff import Backoff
from exporter.checks.causes import link_round
from exporter.checks.controller import RECONCILE_FAILURES, ControllerLocation, denial, find_deployment
from exporter.exchange import AgentView, agent_findings, cluster_document
from exporter.kube import controller_logs, resources
from exporter.kube.client import ApiError, KubeClient
from exporter.kube.snapshots import build_snapshot
from exporter.kube.store import Changes, Store
from exporter.kube.watch import Reflector
from exporter.lb.aws_settings import to_document
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import combine
from exporter.lb.readiness_gates import GateTracker
from exporter.metrics.bindings import binding_rows
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.model.objects import AgentPod
from exporter.model.results import CheckResult, ResultSet
from exporter.model.snapshot import ClusterSnapshot
from exporter.report import iso
from exporter.roles.cluster_evaluator import IncrementalEvaluator
from exporter.roles.leader import LeaderElector, default_identity
from exporter.roles.node import wait_any
from exporter.roles.readiness import keep_readiness, record_caches
from exporter.settings import Settings
from exporter.state import Board, Published, TargetGroupsAnswer

if TYPE_CHECKING:
    from exporter.checks.aws_round import AwsRound

log = structlog.get_logger("lbdoctor.cluster")


LEADER_ELECTION = "leader election"  # the task's name: the daemon stops it first and releases the Lease


# What the cluster role watches (the chart's ClusterRole grants exactly these; Deployments: in the controller's
# namespace only).
WATCHED = (
    resources.PODS,
    resources.SERVICES,
    resources.ENDPOINT_SLICES,
    resources.INGRESSES,
    resources.INGRESS_CLASSES,
    resources.TARGET_GROUP_BINDINGS,
    resources.NODES,
    resources.DEPLOYMENTS,
    resources.EVENTS,
    *resources.FRONT_ENDS,
)


def _everything(_item: Any) -> bool:
    return True


def shard_of(namespace: str, total: int) -> int:
    """Stable across processes and restarts (unlike hash())."""
    return int.from_bytes(hashlib.sha256(namespace.encode()).digest()[:8], "big") % total


class ClusterAgent:
    def __init__(self, settings: Settings, client: KubeClient, metrics: SelfMetrics, board: Board) -> None:
        self._settings = settings
        self._client = client
        self._metrics = metrics
        self._board = board
        self._cache_changed = asyncio.Event()
        self._leadership_changed = asyncio.Event()
        self._where = ControllerLocation.from_settings(settings)
        self._primary_shard = settings.shard == 0
        options: dict[str, dict[str, Any]] = {
            resources.DEPLOYMENTS.name: {"namespace": settings.controller_namespace},
            resources.EVENTS.name: {"field_selector": "type=Warning", "keep": self._keep_event},
            # Gateways and their configuration may live in any namespace: every shard keeps them all.
            **{r.name: {"keep": _everything} for r in resources.FRONT_ENDS if r not in resources.ROUTES},
        }
        watched = [(resource, options.get(resource.name, {})) for resource in WATCHED]
        self.stores = {resource.name: Store(resource.name, self._cache_changed) for resource, _ in watched}
        self._reflectors = {
            resource.name: Reflector(
                client,
                resource,
                self.stores[resource.name],
                metrics,
                inactivity_timeout=settings.watch_inactivity_timeout_seconds,
                watch_timeout=settings.watch_timeout_seconds,
                **{"keep": self._in_shard, **resource_options},
            )
            for resource, resource_options in watched
        }
        self._evaluator = IncrementalEvaluator(
            ControllerConfig.from_settings(settings),
            self._where,
            include_controller=self._primary_shard,
            errors=metrics,
        )
        self._elector: LeaderElector | None = None
        board.standby = settings.leader_election  # until the Lease is ours
        self._lease_namespace = settings.lease_namespace or "default"
        sharded = settings.total_shards > 1
        self._lease_name = f"{settings.lease_name}-{settings.shard}" if sharded else settings.lease_name
        self._identity = settings.identity or default_identity()
        if settings.leader_election:
            self._elector = LeaderElector(
                client,
                name=self._lease_name,
                namespace=self._lease_namespace,
                identity=self._identity,
                lease_duration=settings.lease_duration_seconds,
                on_change=self._on_leadership,
                errors=metrics,
            )
        board.targetgroups = self.targetgroups
        board.probes = self.probes
        self._leader: tuple[float, str, str | None] | None = None  # (looked up at, holder, its base URL)
        self._session: aiohttp.ClientSession | None = None
        self._logs: dict[str, str] = {}
        self._logs_error: str | None = None
        self._logs_changed = False
        self._generation = 0
        self._published_as_leader = False
        self._full_next = True  # evaluate everything next round (first round, new leadership, after a failure)
        self._snapshot: ClusterSnapshot | None = None  # the last evaluated one, for the AWS round
        self._aws: AwsRound | None = None
        self._peer = PeerClient.from_settings(settings)  # how this role reads the other replicas and the node agents
        self._feed = ProbeFeed(
            metrics,
            self._peer,
            keep_for=settings.node_agent_keep_seconds,
            concurrency=settings.node_agent_concurrency,
            telemetry=metrics,
        )
        # The node agents: pods of the DaemonSet in its namespace, watched on their own (not through the
        # sharded, cluster-wide pod cache), so only its own agents can answer for a node.
        self._agents = Store(resources.NODE_AGENTS.name, asyncio.Event())
        self._agents_reflector: Reflector | None = None
        if settings.node_agent_daemonset:
            self._agents_reflector = Reflector(
                client,
                resources.NODE_AGENTS,
                self._agents,
                metrics,
                namespace=settings.node_agent_namespace,
                label_selector=settings.node_agent_selector or None,
                keep=self._is_own_agent,
                inactivity_timeout=settings.watch_inactivity_timeout_seconds,
                watch_timeout=settings.watch_timeout_seconds,
            )
        self._gates = GateTracker()  # pods waiting on the load balancer's readiness gate
        self._imported: tuple[CheckResult, ...] = ()  # the node agents' findings, for the causal rules
        self._linked: tuple[tuple[CheckResult, ...], tuple[CheckResult, ...], list[CheckResult]] = ((), (), [])
        self._doctor: Any = None
        if settings.cluster_name:
            # boto3 is loaded only by a cluster role that has AWS work to do.
            from exporter.aws.config import AwsSettings
            from exporter.aws.doctor import AwsDoctor

            self._doctor = AwsDoctor(AwsSettings.from_settings(settings), errors=metrics)
        self._announced = False

    # scope ------------------------------------------------------------------------------------
    def _in_shard(self, item: Any) -> bool:
        namespace = item.meta.namespace
        if not namespace or self._settings.total_shards == 1:
            return True
        if namespace == self._settings.controller_namespace and self._primary_shard:
            return True  # the controller's pods belong to the shard that checks the controller
        return shard_of(namespace, self._settings.total_shards) == self._settings.shard

    def _keep_event(self, item: Any) -> bool:
        return item.reason in RECONCILE_FAILURES and self._in_shard(item)

    @property
    def leading(self) -> bool:
        return self._elector is None or self._elector.leading

    def _on_leadership(self, leading: bool) -> None:
        self._leadership_changed.set()

    # tasks ------------------------------------------------------------------------------------
    def tasks(self) -> dict[str, Callable[[], Awaitable[None]]]:
        jobs: dict[str, Callable[[], Awaitable[None]]] = {
            f"watch {name}": reflector.run for name, reflector in self._reflectors.items()
        }
        jobs["readiness"] = self.keep_readiness
        jobs["evaluator"] = self.evaluate_forever
        if self._primary_shard:
            jobs["controller logs"] = self.read_controller_logs_forever
        if self._doctor is not None:
            jobs["aws"] = self.aws_forever
        if self._agents_reflector is not None:
            jobs["watch node agents"] = self._agents_reflector.run
        if self._agents_reflector is not None or self._settings.node_agent_urls.strip():
            jobs["node agents"] = self.read_agents_forever
        if self._elector is not None:
            jobs[LEADER_ELECTION] = self._elector.run
        return jobs

    async def evaluate_forever(self) -> None:
        """Forever: after changes (debounced), evaluate what they touch and publish, while leading.

        A round that raises is logged and counted; the last published round stays (the page never
        falls back to empty), and everything is evaluated again after a backoff. Restarted by the
        supervisor, the loop evaluates at once from the caches rather than waiting for a change.
        """
        self._full_next = True  # a restarted loop may have left the evaluator half done
        if self._generation:
            self._cache_changed.set()
        retry = Backoff()
        while True:
            await wait_any(self._cache_changed, self._leadership_changed)
            # Debounce bursts of changes, except for the first round: once every cache has been
            # listed there is nothing to wait for.
            if self._generation or not all(store.synced for store in self.stores.values()):
                await asyncio.sleep(self._settings.publish_interval_seconds)
            self._leadership_changed.clear()
            self._cache_changed.clear()
            try:
                await self._round()
            except Exception:
                log.exception("evaluation failed; the last results stay published until the next round")
                self._metrics.error("checks", "evaluation")
                self._full_next = True
                await asyncio.sleep(retry.next())
                self._cache_changed.set()
            else:
                retry.reset()

    async def _round(self) -> None:
        self._update_readiness()
        if not self.leading:
            if self._published_as_leader:
                self._board.publish(Published())
                log.info("standing by: no check series while another replica leads")
            self._published_as_leader = False
            self._full_next = True  # the next leadership starts from a full evaluation
            for store in self.stores.values():
                store.take_changes()
            return
        if not all(store.synced for store in self.stores.values()):
            return
        started = time.perf_counter()
        self._generation += 1
        snapshot = build_snapshot(self.stores, self._generation, self._logs, self._logs_error)
        changes: dict[str, Changes] | None = {name: store.take_changes() for name, store in self.stores.items()}
        if self._full_next:
            changes = None  # everything
        logs_changed, self._logs_changed = self._logs_changed, False
        pod_changes = None if changes is None or changes["pods"].full else changes["pods"].items
        self._full_next = True  # until this round is through: one that raises leaves the evaluator half done
        await asyncio.to_thread(self._evaluate, snapshot, changes, pod_changes, logs_changed)
        self._full_next = False
        self._published_as_leader = True
        self._snapshot = snapshot
        steady, failing = self._evaluator.split()
        aws = self._aws
        if aws is not None:
            steady, failing = (*steady, *aws.steady), (*failing, *aws.failing)
        # One round: the object checks, the AWS checks and the node agents' findings, linked by the causal
        # rules. Only failing and warning results take part, so this costs the failures, not the round.
        linked = await self._link(failing)
        results = (*steady, *linked)
        rollup = self._evaluator.rollup()
        if aws is not None:
            rollup = {**rollup, **aws.rollup}  # the AWS checks' rows: other checks, same owners
        self._board.publish(
            Published(
                ResultSet(snapshot.generation, time.time(), results, rollup),
                plans=self._evaluator.plans,
                snapshot=snapshot,
                aws=aws,
                gates=self._gates.rows(),
                bindings=binding_rows(snapshot, aws.aws if aws is not None else None),
            )
        )
        elapsed = time.perf_counter() - started
        self._metrics.cycle_duration.labels("evaluate").set(elapsed)
        log.debug("evaluated", units=self._evaluator.last_units_evaluated, results=len(results), seconds=elapsed)

    def _evaluate(
        self,
        snapshot: ClusterSnapshot,
        changes: dict[str, Changes] | None,
        pod_changes: dict[str, tuple[Any, Any]] | None,
        logs_changed: bool,
    ) -> None:
        """In a worker thread: the object checks and the readiness-gate rows, from what changed."""
        self._gates.update(snapshot.pods, pod_changes)
        self._evaluator.evaluate(snapshot, changes, logs_changed)

    async def _link(self, failing: tuple[CheckResult, ...]) -> list[CheckResult]:
        """The failures linked with the node agents' (in a worker thread); the last answer again when neither
        changed, which is most rounds: units that did not change keep their result objects."""
        last, imported, linked = self._linked
        same = len(last) == len(failing) and all(a is b for a, b in zip(last, failing, strict=True))
        if not same or imported is not self._imported:
            linked = await asyncio.to_thread(link_round, failing, self._imported)
            self._linked = (failing, self._imported, linked)
        return linked

    def _is_own_agent(self, pod: AgentPod) -> bool:
        return pod.controller_kind == "DaemonSet" and pod.controller_name == self._settings.node_agent_daemonset

    def node_agents(self) -> list[Agent]:
        """The node agents to read: those configured by URL, and the pods of the node agents' DaemonSet
        (host network: pod IP = node IP), each trusted for the node it runs on only."""
        settings = self._settings
        agents = [Agent(url.strip().rstrip("/")) for url in settings.node_agent_urls.split(",") if url.strip()]
        agents += [
            Agent(agent_base(settings.node_agent_scheme, pod.pod_ip, settings.node_agent_port), pod.node_name)
            for pod in self._agents.values()
            if pod.pod_ip and pod.node_name and not pod.meta.deleting
        ]
        return agents

    async def read_agents_forever(self) -> None:
        """Forever, while leading: read every node agent (conditional requests, a bounded number at a time);
        their states and ages go to the board at once, and a change in what they say publishes a round (the
        causal rules link it with this role's findings)."""
        while True:
            if self.leading:
                started = time.perf_counter()
                changed = await self._feed.read(self.node_agents())
                views = self._feed.views()
                if self._settings.total_shards > 1:
                    views = tuple(self._shard_view(view) for view in views)
                self._board.agents = views
                if changed:
                    found = tuple(r for view in views if view.shows for r in view.results)
                    unseen = agent_findings(views) if self._primary_shard else ()  # about nodes: shard 0's
                    self._imported = (*unseen, *found)
                    self._cache_changed.set()
                self._metrics.cycle_duration.labels("node_agents").set(time.perf_counter() - started)
            elif self._board.agents or self._imported:
                self._board.agents, self._imported = (), ()
            await asyncio.sleep(self._settings.node_agent_interval_seconds)

    def _namespace_in_shard(self, namespace: str) -> bool:
        if not namespace:
            return self._primary_shard  # cluster-scoped findings (a node's kube-proxy) once, on shard 0
        if namespace == self._settings.controller_namespace and self._primary_shard:
            return True
        return shard_of(namespace, self._settings.total_shards) == self._settings.shard

    def _shard_view(self, view: AgentView) -> AgentView:
        """An agent's targets and findings in this shard's namespaces only."""
        return replace(
            view,
            targets=tuple(s for s in view.targets if self._namespace_in_shard(s.target.namespace)),
            results=tuple(r for r in view.results if self._namespace_in_shard(r.object.namespace)),
        )

    async def aws_forever(self) -> None:
        """Forever, while leading: ask AWS what is due, correlate with the node agents' probes, republish."""
        doctor = self._doctor
        assert doctor is not None
        while True:
            snapshot = self._snapshot
            if self.leading and snapshot is not None:
                probes = self._feed.statuses()
                plan = combine(self._evaluator.plans)
                waiting = self._gates.waiting(snapshot.target_group_bindings)
                self._aws = await doctor.refresh(snapshot, plan=plan, probes=probes, waiting=waiting)
                self._cache_changed.set()  # publish the round with the next evaluation
            elif not self.leading:
                self._aws = None
            await asyncio.sleep(self._settings.aws_refresh_interval_seconds)

    async def release(self, timeout: float) -> None:
        """Give the Lease up (shutdown), within ``timeout`` seconds."""
        if self._elector is not None:
            await self._elector.release(timeout)

    async def close(self) -> None:
        await self._feed.close()
        if self._session is not None:
            await self._session.close()
        if self._doctor is not None:
            self._doctor.close()

    async def keep_readiness(self) -> None:
        await keep_readiness(self.stores, self._metrics, self._board, self._settings.kube_stale_after_seconds)

    # /api/v1/targetgroups, /api/v1/probes ---------------------------------------------------------
    async def targetgroups(self, proxied: bool) -> TargetGroupsAnswer:
        """The leader answers from its AWS round. A standby asks the leader and relays its answer: the
        chart's Service balances over both replicas, and a node agent sent to the standby must get the
        same document (not a 404 that it would count as an error)."""
        if self.leading:
            aws = self._board.current.aws
            if aws is not None:
                return 200, aws.targetgroups_document(iso(time.time())), {}
            if self._doctor is None:  # no AWS configured: no real settings, and none will come
                return 200, to_document((), cluster="", generated_at=iso(time.time())), {}
            return 503, {"error": "the first AWS round has not finished yet"}, {"Retry-After": "15"}
        return await self._relay("/api/v1/targetgroups", proxied, "the target-group settings")

    async def probes(self, proxied: bool, namespace: str | None) -> TargetGroupsAnswer:
        """Every node agent's probe states and findings with each agent's state and age (``lbdoctor diagnose``
        reads it through the API server's service proxy, which may pick the standby: it relays the leader's)."""
        if self.leading:
            return 200, cluster_document(self._board.agents, time.time(), namespace=namespace), {}
        query = f"?{urlencode({'namespace': namespace})}" if namespace else ""
        return await self._relay(f"/api/v1/probes{query}", proxied, "the node agents' probes")

    async def _relay(self, path: str, proxied: bool, what: str) -> TargetGroupsAnswer:
        if proxied:
            return 503, {"error": f"{self._identity} is not the leader either"}, {"Retry-After": "5"}
        holder, base = await self._leader_base()
        if base is None:
            return 503, {"error": f"no leader to ask: {holder}"}, {"Retry-After": "5"}
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"X-Lbdoctor-Proxied": self._identity})
        try:
            document = await self._peer.get_json(self._session, f"{base}{path}")
        except PeerError as error:
            return 503, {"error": f"the leader {holder} answered: {error}"}, {"Retry-After": "5"}
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            self._leader = None  # look the leader up again next time
            self._metrics.error("agents", "leader_unreachable")
            log.warning(f"could not reach the leader for {what}", leader=holder, error=str(error))
            return 503, {"error": f"the leader {holder} at {base} did not answer"}, {"Retry-After": "5"}
        return 200, document, {"X-Lbdoctor-Leader": holder}

    async def _leader_base(self) -> tuple[str, str | None]:
        """The Lease holder and its base URL: its pod's IP (same namespace, named by its identity, as the
        chart's POD_NAME makes it) and this replica's own port. Looked up at most every 5 s."""
        now = asyncio.get_running_loop().time()
        if self._leader is not None and now - self._leader[0] < 5.0:
            return self._leader[1], self._leader[2]
        holder, base = "", None
        try:
            lease = await self._client.get(
                f"/apis/coordination.k8s.io/v1/namespaces/{self._lease_namespace}/leases/{self._lease_name}", timeout=5
            )
            holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
            if not holder or holder == self._identity:
                return "the Lease has no holder", None
            pod = await self._client.get(f"/api/v1/namespaces/{self._lease_namespace}/pods/{holder}", timeout=5)
            ip = str((pod.get("status") or {}).get("podIP") or "")
            if ip:
                # One web config serves both roles, so the replicas speak the scheme the node agents do.
                base = agent_base(self._settings.node_agent_scheme, ip, self._settings.listen_address[1])
        except ApiError as error:
            if error.status == 404 and not holder:
                return "no replica holds the Lease yet", None
            self._metrics.error("kube", f"leader_lookup_http_{error.status}")
            return f"{holder or 'the Lease'}: {error.status} {error.reason}", None
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            return f"the API server did not answer: {error}", None
        self._leader = (now, holder, base)
        return holder, base

    def _update_readiness(self) -> None:
        self._board.standby = not self.leading
        stale_after = self._settings.kube_stale_after_seconds
        if record_caches(self.stores, self._metrics, self._board, stale_after) and not self._announced:
            self._announced = True
            log.info("all caches synced", shard=self._settings.shard, total_shards=self._settings.total_shards)

    async def read_controller_logs_forever(self) -> None:
        """Forever, while leading: keep the controller pods' recent denial and error lines."""
        while True:
            if self.leading and self.stores["deployments"].synced and self.stores["pods"].synced:
                await self.read_controller_logs()
                await asyncio.sleep(self._settings.controller_log_interval_seconds)
            else:
                await asyncio.sleep(1.0)

    async def read_controller_logs(self) -> None:
        snapshot = build_snapshot({"deployments": self.stores["deployments"], "pods": self.stores["pods"]}, 0)
        found = await controller_logs.read(self._client, find_deployment(snapshot, self._where), self._metrics)
        if found.logs != self._logs or found.error != self._logs_error:
            self._logs, self._logs_error, self._logs_changed = found.logs, found.error, True
            denied = sorted({d for text in found.logs.values() for line in text.splitlines() if (d := denial(line))})
            if denied:
                log.warning("controller logs show denied AWS calls", denied=denied[:5])
            self._cache_changed.set()
