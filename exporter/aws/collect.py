"""Ask AWS what it knows about the cluster's target groups and the network path, with the fewest calls.

One ``collect()`` is one round. What it asks, and how often:

- **Topology** (every ``topology_interval``, default 5 min, or when a new TargetGroupBinding names an
  unknown ARN): every target group of the Region (DescribeTargetGroups, 400 a page), the tags of
  target groups not seen before (DescribeTags, 20 ARNs a call, cached per ARN), the load balancers of
  the cluster's target groups (20 a call), and per VPC the ENIs, subnets, NACLs and route tables
  (one paged call each, filtered by ``vpc-id``), the nodes' and instance targets' instances, the
  security groups they and the LBs use, and the VPCs.
- **Target health**: one DescribeTargetHealth per target group, the one call ELBv2 cannot batch, when
  something says the load balancer's verdict may have changed (a *trigger*) or its interval is up:
  at once for a CloudWatch disagreement (``exporter.aws.detect``) or a reconcile failure on its
  TargetGroupBinding; every ``hot_interval`` (15 s) while a target is not healthy, a node agent's probe
  of one fails, or a pod waits on its readiness gate; every ``target_health_interval`` (60 s)
  otherwise (the *sweep*), as far as the budget allows. A round spends at most the limiter's budget
  for ``round_seconds`` (triggered first, then hot, then the stalest), so a round stays short and a big
  cluster is covered over several rounds without ever exceeding the rate limit.
- Between topology refreshes, IPs and instances not seen before are looked up incrementally.

Failures never abort a round: each part records an ``ApiProblem`` and the checks depending on it
say ``unknown`` with the IAM action that failed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from exporter.aws import detect, parse
from exporter.aws.api import AwsApi, AwsCallError, action_of
from exporter.aws.config import AwsSettings
from exporter.aws.history import advance
from exporter.aws.ids import instance_id_of, normalise_ip
from exporter.aws.model import (
    ApiProblem,
    AwsSnapshot,
    Instance,
    LoadBalancer,
    NetworkAcl,
    NetworkInterface,
    ProblemKind,
    RouteTable,
    SecurityGroup,
    Subnet,
    TargetGroup,
    TargetGroupHealth,
    TargetKey,
    TargetTrack,
    Topic,
    Vpc,
)
from exporter.model.snapshot import ClusterSnapshot
from exporter.telemetry import ErrorSink

log = structlog.get_logger("lbdoctor.aws")

CLUSTER_TAG = "elbv2.k8s.aws/cluster"
TAGS_PER_CALL = 20  # DescribeTags takes at most 20 ARNs
LBS_PER_CALL = 20  # DescribeLoadBalancers takes at most 20 ARNs
FILTER_VALUES = 200  # values per EC2 filter lbdoctor sends in one call
TG_PAGE = 400  # DescribeTargetGroups PageSize maximum
EC2_PAGE = 1000  # EC2 MaxResults maximum
MAX_PAGES = 1000  # a runaway paginator must not loop forever
TAG_TTL_TOPOLOGY_ROUNDS = 12  # re-read a target group's tags after this many topology refreshes
TRIGGER_GAP = 5.0  # a triggered target group is not read again sooner than this

# Why a target group's health is read (lbdoctor_aws_target_health_reads_total{trigger}), in priority order.
FIRST, CLOUDWATCH, BINDING = "first", "cloudwatch", "binding"  # read at once
PROBE, READINESS_GATE, NOT_HEALTHY = "probe", "readiness_gate", "not_healthy"  # hot: every hot_interval
SWEEP, FULL = "sweep", "full"  # every target_health_interval as the budget allows; diagnose
# A probe that just started failing or a pod that just started waiting: read at once, counted as probe /
# readiness_gate like the hot reads that follow.
PROBE_NEWS, READINESS_GATE_NEWS = "probe_news", "readiness_gate_news"
_RANK = {
    FIRST: 0,
    CLOUDWATCH: 0,
    BINDING: 0,
    PROBE_NEWS: 0,
    READINESS_GATE_NEWS: 0,
    NOT_HEALTHY: 1,
    PROBE: 1,
    READINESS_GATE: 1,
    SWEEP: 2,
    FULL: 0,
}
_COUNTED_AS = {PROBE_NEWS: PROBE, READINESS_GATE_NEWS: READINESS_GATE}


class _NoErrors:
    def error(self, component: str, kind: str) -> None:
        return None


T = TypeVar("T")


def _vpc_filter(vpc_ids: list[str]) -> list[dict[str, Any]]:
    return [{"Name": "vpc-id", "Values": vpc_ids}]


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class _Ec2State:
    instances: dict[str, Instance] = field(default_factory=dict)
    interfaces_by_ip: dict[str, NetworkInterface] = field(default_factory=dict)
    unknown_ips: set[str] = field(default_factory=set)  # looked up, not in any ENI we can see
    unknown_instances: set[str] = field(default_factory=set)
    security_groups: dict[str, SecurityGroup] = field(default_factory=dict)
    subnets: dict[str, Subnet] = field(default_factory=dict)
    network_acls: tuple[NetworkAcl, ...] = ()
    route_tables: tuple[RouteTable, ...] = ()
    vpcs: dict[str, Vpc] = field(default_factory=dict)


class AwsCollector:
    """Keeps what AWS said between rounds and asks only for what is due. One caller at a time."""

    def __init__(self, api: AwsApi, settings: AwsSettings, errors: ErrorSink | None = None) -> None:
        self._api = api
        self._settings = settings
        self._errors = errors or _NoErrors()
        self._listing: dict[str, dict[str, Any]] = {}  # every target group of the Region, raw
        self._listed = False
        self._tags: dict[str, tuple[dict[str, str], int]] = {}  # ARN -> tags, topology round read in
        self._topology_round = 0
        self._topology_at: float | None = None
        # A denial or missing credentials is the same for every target group: after one, stop asking until
        # the next topology refresh instead of spending the whole budget on refusals.
        self._health_blocked: tuple[float, ApiProblem] | None = None
        self._load_balancers: dict[str, LoadBalancer] = {}
        self._health: dict[str, TargetGroupHealth] = {}
        self._health_problems: dict[str, ApiProblem] = {}
        self._missing: dict[str, ApiProblem] = {}
        self._problems: dict[Topic, ApiProblem] = {}
        self._ec2 = _Ec2State()
        self._history: dict[TargetKey, TargetTrack] = {}
        self._triggered: dict[str, str] = {}  # ARN -> trigger, until it is read
        self._reads: Counter[str] = Counter()  # target-health reads by trigger
        self._cloudwatch_at: float | None = None
        self._cloudwatch_acted: dict[str, float] = {}  # ARN -> period end of the datapoint acted upon
        self._watched = 0  # target groups the detector watched in its last pass
        self._hot_targets_before: set[str] = set()
        self._hot_groups_before: set[str] = set()

    # -- the round ---------------------------------------------------------------------------
    async def collect(
        self,
        cluster: ClusterSnapshot,
        now: float,
        *,
        hot_targets: Iterable[str] = (),
        hot_groups: Iterable[str] = (),
        triggered_groups: Iterable[str] = (),
        full: bool = False,
    ) -> AwsSnapshot:
        """One round. ``hot_targets``: target ids (pod IPs, instance ids) whose probes fail; ``hot_groups``:
        ARNs of target groups pods wait on (readiness gates); both are read every hot interval.
        ``triggered_groups``: ARNs to read at once (a reconcile failure on their binding). ``full``:
        refresh everything now regardless of cadence and budget (``lbdoctor diagnose``)."""
        bound = frozenset(b.target_group_arn for b in cluster.target_group_bindings.values() if b.target_group_arn)
        topology_due = (
            full
            or self._topology_at is None
            or now - self._topology_at >= self._settings.topology_interval
            # a new binding: list again, unless listing is what fails (then the interval paces retries)
            or (self._listed and any(arn not in self._listing and arn not in self._missing for arn in bound))
        )
        if topology_due:
            self._topology_round += 1
            await self._refresh_target_groups(bound)
        groups = self._cluster_target_groups(bound)
        if topology_due:
            await self._refresh_load_balancers(groups)
        for arn in triggered_groups:
            self._triggered.setdefault(arn, BINDING)
        hot_targets = {normalise_ip(t) for t in hot_targets}
        hot_groups = set(hot_groups)
        self._trigger_on_news(hot_targets, hot_groups)
        if not full:
            await self._detect(groups, now, hot_targets)
        fetched, vanished = await self._refresh_health(bound, groups, now, hot_targets, hot_groups, full)
        for arn in vanished:
            groups.pop(arn, None)
        await self._refresh_ec2(cluster, groups, full_refresh=topology_due)
        if topology_due:
            self._topology_at = now
        self._history = advance(self._history, fetched, forget=vanished)
        live = set(groups) | bound
        return AwsSnapshot(
            cluster=self._settings.cluster_name,
            region=self._api.region,
            taken_at=now,
            target_groups=groups,
            bound_arns=bound,
            missing={arn: p for arn, p in self._missing.items() if arn in bound},
            health={arn: h for arn, h in self._health.items() if arn in live},
            health_problems={arn: p for arn, p in self._health_problems.items() if arn in live},
            load_balancers=dict(self._load_balancers),
            instances=dict(self._ec2.instances),
            interfaces_by_ip=dict(self._ec2.interfaces_by_ip),
            security_groups=dict(self._ec2.security_groups),
            subnets=dict(self._ec2.subnets),
            network_acls=self._ec2.network_acls,
            route_tables=self._ec2.route_tables,
            vpcs=dict(self._ec2.vpcs),
            problems=dict(self._problems),
            history=dict(self._history),
            api_requests=self._api.counts(),
            target_health_reads=dict(self._reads),
            budgets=self._api.budgets(),
            budget_waited=self._api.waited(),
            cloudwatch_watched=self._watched,
        )

    # -- helpers -------------------------------------------------------------------------------
    def _failed(self, error: AwsCallError) -> ApiProblem:
        self._errors.error("aws", error.problem.kind.value)
        log.warning("AWS call failed", action=error.problem.action, kind=error.problem.kind.value, error=str(error))
        return error.problem

    async def _pages(
        self, operation: str, result_key: str, *, token_in: str, token_out: str, **params: Any
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            page = await self._api.call(operation, **params, **({token_in: token} if token else {}))
            for item in page.get(result_key) or ():
                if isinstance(item, dict):
                    items.append(item)
                else:
                    self._malformed(f"{operation} returned a {type(item).__name__} among its {result_key}")
            token = page.get(token_out) or None
            if not token:
                break
        return items

    async def _ec2_pages(self, operation: str, result_key: str, **params: Any) -> list[dict[str, Any]]:
        return await self._pages(
            operation, result_key, token_in="NextToken", token_out="NextToken", MaxResults=EC2_PAGE, **params
        )

    async def _batched(self, operation: str, key: str, items: Sequence[str], size: int) -> list[dict[str, Any]]:
        """One call per ``size`` ARNs. AWS fails a whole batch when one ARN in it was just deleted; then
        the batch is asked one ARN at a time and the vanished ones are left out (rare, so cheap)."""
        answers = []
        for chunk in _chunks(items, size):
            try:
                answers.append(await self._api.call(operation, **{key: list(chunk)}))
            except AwsCallError as error:
                if error.problem.kind is not ProblemKind.NOT_FOUND:
                    raise
                for item in chunk if len(chunk) > 1 else ():
                    try:
                        answers.append(await self._api.call(operation, **{key: [item]}))
                    except AwsCallError as single:
                        if single.problem.kind is not ProblemKind.NOT_FOUND:
                            raise
        return answers

    def _malformed(self, what: str) -> None:
        self._errors.error("aws", "malformed")
        log.warning("skipping a malformed AWS entry", error=what)

    def _parse_all(self, reader: Callable[[Any], T], raws: Iterable[Any]) -> list[T]:
        parsed = []
        for raw in raws:
            try:
                parsed.append(reader(raw))
            except (parse.MalformedEntry, TypeError, KeyError, AttributeError) as error:
                self._malformed(str(error))
        return parsed

    async def _topic(self, topic: Topic, job: Awaitable[None]) -> None:
        try:
            await job
        except AwsCallError as error:
            self._problems[topic] = self._failed(error)
        else:
            self._problems.pop(topic, None)

    # -- target groups and tags ------------------------------------------------------------------
    async def _refresh_target_groups(self, bound: frozenset[str]) -> None:
        try:
            raws = await self._pages(
                "describe_target_groups", "TargetGroups", token_in="Marker", token_out="NextMarker", PageSize=TG_PAGE
            )
        except AwsCallError as error:
            self._problems[Topic.TARGET_GROUPS] = self._failed(error)
            return
        self._problems.pop(Topic.TARGET_GROUPS, None)
        self._listing = {}
        for raw in raws:
            if raw.get("TargetGroupArn"):
                self._listing[str(raw["TargetGroupArn"])] = raw
            else:
                self._malformed("target group without TargetGroupArn")
        self._listed = True
        action = action_of("describe_target_groups")
        where = self._api.region or "this Region"
        self._missing = {
            arn: ApiProblem(action, ProblemKind.NOT_FOUND, f"target group {arn} not found in {where} by {action}")
            for arn in bound
            if arn not in self._listing
        }
        await self._refresh_tags()

    async def _refresh_tags(self) -> None:
        stale_before = self._topology_round - TAG_TTL_TOPOLOGY_ROUNDS
        wanted = [arn for arn in self._listing if arn not in self._tags or self._tags[arn][1] <= stale_before]
        for arn in list(self._tags):
            if arn not in self._listing:
                del self._tags[arn]
        try:
            answers = await self._batched("describe_tags", "ResourceArns", wanted, TAGS_PER_CALL)
            for answer in answers:
                for description in answer.get("TagDescriptions") or ():
                    arn = str(description.get("ResourceArn", ""))
                    self._tags[arn] = (parse.tags(description.get("Tags") or ()), self._topology_round)
        except AwsCallError as error:
            self._problems[Topic.TAGS] = self._failed(error)
        else:
            self._problems.pop(Topic.TAGS, None)

    def _cluster_target_groups(self, bound: frozenset[str]) -> dict[str, TargetGroup]:
        """The target groups of this cluster: those a binding names, and those the controller tagged."""
        groups: dict[str, TargetGroup] = {}
        for arn, raw in self._listing.items():
            tag_map = self._tags.get(arn, ({}, 0))[0]
            if arn in bound or tag_map.get(CLUSTER_TAG) == self._settings.cluster_name:
                try:
                    groups[arn] = parse.target_group(raw, tag_map)
                except parse.MalformedEntry as error:
                    self._malformed(str(error))
        return groups

    async def _refresh_load_balancers(self, groups: Mapping[str, TargetGroup]) -> None:
        wanted = sorted({lb for group in groups.values() for lb in group.load_balancer_arns})

        async def job() -> None:
            found: dict[str, LoadBalancer] = {}
            for answer in await self._batched("describe_load_balancers", "LoadBalancerArns", wanted, LBS_PER_CALL):
                parsed = self._parse_all(parse.load_balancer, answer.get("LoadBalancers") or ())
                found.update((lb.arn, lb) for lb in parsed)
            self._load_balancers = found

        await self._topic(Topic.LOAD_BALANCERS, job())

    # -- which target groups to read -------------------------------------------------------------
    def _trigger_on_news(self, hot_targets: set[str], hot_groups: set[str]) -> None:
        """A probe that starts failing, or a pod that starts waiting on a readiness gate, is news: its
        target group is read at once (once; while it lasts, every hot interval)."""
        new_targets = hot_targets - self._hot_targets_before
        for arn, health in self._health.items():
            if new_targets and any(normalise_ip(t.id) in new_targets for t in health.targets):
                self._triggered.setdefault(arn, PROBE_NEWS)
        for arn in hot_groups - self._hot_groups_before:
            if arn in self._health:
                self._triggered.setdefault(arn, READINESS_GATE_NEWS)
        self._hot_targets_before, self._hot_groups_before = hot_targets, hot_groups

    def _trigger(self, arn: str, hot_targets: set[str], hot_groups: set[str]) -> str | None:
        """Why this target group should be read sooner than the sweep would, or None."""
        health = self._health.get(arn)
        if health is None:
            return FIRST
        if arn in self._triggered:
            return self._triggered[arn]
        if arn in self._health_problems or any(t.state != "healthy" for t in health.targets):
            return NOT_HEALTHY
        if hot_targets and any(normalise_ip(t.id) in hot_targets for t in health.targets):
            return PROBE
        if arn in hot_groups:
            return READINESS_GATE
        return None

    def _due(
        self, arns: Iterable[str], now: float, hot_targets: set[str], hot_groups: set[str], full: bool
    ) -> list[tuple[str, str]]:
        """(ARN, trigger) of the target groups to read this round: triggered first, then hot, then the stalest."""
        settings = self._settings
        ranked: list[tuple[int, float, str, str]] = []
        for arn in arns:
            trigger = self._trigger(arn, hot_targets, hot_groups)
            fetched = self._health[arn].fetched_at if arn in self._health else float("-inf")
            if full:
                ranked.append((0, fetched, arn, FULL))
                continue
            if trigger is None:
                wait, trigger = settings.target_health_interval, SWEEP
            elif _RANK[trigger] == 0:
                wait = TRIGGER_GAP
            else:
                wait = settings.hot_interval
            if now - fetched >= wait:
                ranked.append((_RANK[trigger], fetched, arn, trigger))
        ranked.sort()
        due = [(arn, trigger) for _, _, arn, trigger in ranked]
        if full:
            return due
        # What the bucket holds now plus what it refills in round_seconds: a round stays short even when
        # the sweep keeps the bucket empty, so a trigger waits for at most one short round.
        limiter = self._api.limiter("elbv2")
        budget = max(1, int(limiter.available() + limiter.rate * settings.round_seconds))
        return due[:budget]

    # -- the change detector ---------------------------------------------------------------------
    def _cold(self, groups: Mapping[str, TargetGroup], hot_targets: set[str]) -> dict[str, TargetGroup]:
        return {
            arn: group
            for arn, group in groups.items()
            if group.supported and self._trigger(arn, hot_targets, set()) is None
        }

    async def _detect(self, groups: Mapping[str, TargetGroup], now: float, hot_targets: set[str]) -> None:
        """Ask CloudWatch whether a cold target group's unhealthy count moved; mark those that did."""
        settings = self._settings
        if settings.cloudwatch == "off":
            self._watched = 0
            return
        if self._cloudwatch_at is not None and not detect.poll_due(
            self._cloudwatch_at, now, settings.cloudwatch_interval
        ):
            return
        if settings.cloudwatch == "auto" and sum(g.supported for g in groups.values()) <= settings.sweep_capacity:
            self._watched = 0
            return
        series = detect.watches(self._cold(groups, hot_targets))
        self._watched = len({watch.arn for watch in series})
        if not series:
            return  # nothing read yet (the first round) or nothing cold: ask once something is
        self._cloudwatch_at = now
        start, end = detect.window(now)
        found: dict[str, detect.Reading] = {}
        try:
            for chunk in detect.chunks(series):
                answer = await self._api.call(
                    "get_metric_data",
                    MetricDataQueries=detect.queries(chunk),
                    StartTime=start,
                    EndTime=end,
                    ScanBy="TimestampDescending",
                )
                for arn, reading in detect.readings(chunk, answer).items():
                    found[arn] = detect.later(found.get(arn), reading)
        except AwsCallError as error:
            self._failed(error)  # counted and logged; the sweep still covers every target group
            return
        for reading in detect.disagreements(found, self._health, self._cloudwatch_acted):
            self._triggered.setdefault(reading.arn, CLOUDWATCH)
            self._cloudwatch_acted[reading.arn] = reading.period_end
        for arn in [arn for arn in self._cloudwatch_acted if arn not in groups]:
            del self._cloudwatch_acted[arn]

    # -- target health -------------------------------------------------------------------------
    async def _refresh_health(
        self,
        bound: frozenset[str],
        groups: Mapping[str, TargetGroup],
        now: float,
        hot_targets: set[str],
        hot_groups: set[str],
        full: bool,
    ) -> tuple[list[TargetGroupHealth], set[str]]:
        candidates = {arn for arn, group in groups.items() if group.supported}
        if not self._listed:
            # The listing failed: a binding's ARN is still asked (its settings stay unknown).
            candidates |= bound - set(self._missing)
        for arn in list(self._health):
            if arn not in candidates:
                del self._health[arn]
        for arn in [arn for arn in self._triggered if arn not in candidates]:
            del self._triggered[arn]
        if self._health_blocked is not None:
            until, blocked = self._health_blocked
            if now < until and not full:
                self._health_problems.update(dict.fromkeys(candidates, blocked))
                return [], set()
            self._health_blocked = None
        due = self._due(sorted(candidates), now, hot_targets, hot_groups, full)
        gate = asyncio.Semaphore(self._settings.workers)
        fetched: list[TargetGroupHealth] = []
        vanished: set[str] = set()

        async def one(arn: str, trigger: str) -> None:
            async with gate:
                if self._health_blocked is not None:
                    self._health_problems[arn] = self._health_blocked[1]
                    return
                self._reads[_COUNTED_AS.get(trigger, trigger)] += 1
                self._triggered.pop(arn, None)
                try:
                    answer = await self._api.call("describe_target_health", TargetGroupArn=arn)
                except AwsCallError as error:
                    problem = self._failed(error)
                    self._health.pop(arn, None)
                    if problem.kind is ProblemKind.NOT_FOUND:
                        # Deleted between the listing and now: a bound one is a finding, a tagged one is gone.
                        vanished.add(arn)
                        self._listing.pop(arn, None)
                        if arn in bound:
                            self._missing[arn] = problem
                        self._health_problems.pop(arn, None)
                    else:
                        self._health_problems[arn] = problem
                        if problem.kind in (ProblemKind.ACCESS_DENIED, ProblemKind.NO_CREDENTIALS):
                            self._health_blocked = (now + self._settings.topology_interval, problem)
                    return
                targets = self._parse_all(parse.target_health, answer.get("TargetHealthDescriptions") or ())
                health = TargetGroupHealth(arn, tuple(targets), now)
                self._health[arn] = health
                self._health_problems.pop(arn, None)
                fetched.append(health)

        await asyncio.gather(*(one(arn, trigger) for arn, trigger in due))
        return fetched, vanished

    # -- EC2 -----------------------------------------------------------------------------------
    async def _refresh_ec2(
        self, cluster: ClusterSnapshot, groups: Mapping[str, TargetGroup], full_refresh: bool
    ) -> None:
        ec2 = self._ec2
        vpc_ids = sorted(
            {g.vpc_id for g in groups.values() if g.vpc_id}
            | {lb.vpc_id for lb in self._load_balancers.values() if lb.vpc_id}
        )
        target_ips, target_instances = self._targets(groups)
        node_instances = {i for i in (instance_id_of(n.provider_id) for n in cluster.nodes.values()) if i}
        instance_ids = sorted(target_instances | node_instances)
        if full_refresh:
            ec2.unknown_ips.clear()
            ec2.unknown_instances.clear()
            await self._topic(Topic.VPCS, self._load_vpcs(vpc_ids))
            await self._topic(Topic.NETWORK_INTERFACES, self._load_interfaces_of_vpcs(vpc_ids))
            await self._topic(Topic.INSTANCES, self._load_instances(instance_ids, replace=True))
            await self._topic(Topic.SUBNETS, self._load_subnets(vpc_ids))
            await self._topic(Topic.NETWORK_ACLS, self._load_nacls(vpc_ids))
            await self._topic(Topic.ROUTE_TABLES, self._load_route_tables(vpc_ids))
        else:
            # New pods and nodes since the topology refresh; a failed lookup waits for the next refresh.
            new_ips = sorted(ip for ip in target_ips if ip not in ec2.interfaces_by_ip and ip not in ec2.unknown_ips)
            if new_ips:
                await self._topic(Topic.NETWORK_INTERFACES, self._load_interfaces_by_ip(new_ips))
                ec2.unknown_ips.update(ip for ip in new_ips if ip not in ec2.interfaces_by_ip)
            new_instances = [i for i in instance_ids if i not in ec2.instances and i not in ec2.unknown_instances]
            if new_instances:
                await self._topic(Topic.INSTANCES, self._load_instances(new_instances, replace=False))
                ec2.unknown_instances.update(i for i in new_instances if i not in ec2.instances)
        await self._topic(Topic.SECURITY_GROUPS, self._load_security_groups(target_ips, instance_ids, full_refresh))

    def _targets(self, groups: Mapping[str, TargetGroup]) -> tuple[set[str], set[str]]:
        ips: set[str] = set()
        instances: set[str] = set()
        for arn, health in self._health.items():
            group = groups.get(arn)
            for target in health.targets:
                if target.id.startswith("i-") and (group is None or group.target_type == "instance"):
                    instances.add(target.id)
                else:
                    ips.add(normalise_ip(target.id))
        return ips, instances

    async def _load_vpcs(self, vpc_ids: list[str]) -> None:
        if not vpc_ids:
            return
        answer = await self._api.call("describe_vpcs", VpcIds=vpc_ids)
        self._ec2.vpcs = {v.id: v for v in self._parse_all(parse.vpc, answer.get("Vpcs") or ())}

    def _index_interfaces(self, interfaces: Iterable[NetworkInterface], into: dict[str, NetworkInterface]) -> None:
        for interface in interfaces:
            for address in interface.private_ips:
                into[normalise_ip(address)] = interface

    async def _load_interfaces_of_vpcs(self, vpc_ids: list[str]) -> None:
        # Every ENI of the cluster's VPCs in a few pages: far fewer calls than asking per pod IP.
        found: dict[str, NetworkInterface] = {}
        for chunk in _chunks(vpc_ids, FILTER_VALUES):
            raws = await self._ec2_pages(
                "describe_network_interfaces", "NetworkInterfaces", Filters=[{"Name": "vpc-id", "Values": list(chunk)}]
            )
            self._index_interfaces(self._parse_all(parse.network_interface, raws), found)
        self._ec2.interfaces_by_ip = found

    async def _load_interfaces_by_ip(self, ips: list[str]) -> None:
        ec2 = self._ec2
        v4 = [ip for ip in ips if ":" not in ip]
        v6 = [ip for ip in ips if ":" in ip]
        for name, values in (("addresses.private-ip-address", v4), ("ipv6-addresses.ipv6-address", v6)):
            for chunk in _chunks(values, FILTER_VALUES):
                raws = await self._ec2_pages(
                    "describe_network_interfaces", "NetworkInterfaces", Filters=[{"Name": name, "Values": list(chunk)}]
                )
                self._index_interfaces(self._parse_all(parse.network_interface, raws), ec2.interfaces_by_ip)
        ec2.unknown_ips.update(ip for ip in ips if ip not in ec2.interfaces_by_ip)

    async def _load_instances(self, instance_ids: list[str], *, replace: bool) -> None:
        ec2 = self._ec2
        found: dict[str, Instance] = {} if replace else dict(ec2.instances)
        for chunk in _chunks(instance_ids, FILTER_VALUES):
            raws = await self._ec2_pages(
                "describe_instances", "Reservations", Filters=[{"Name": "instance-id", "Values": list(chunk)}]
            )
            found.update((i.id, i) for i in self._parse_all_instances(raws))
        ec2.instances = found
        ec2.unknown_instances.update(i for i in instance_ids if i not in found)

    def _parse_all_instances(self, reservations: list[dict[str, Any]]) -> list[Instance]:
        raws = [raw for reservation in reservations for raw in reservation.get("Instances") or ()]
        return self._parse_all(parse.instance, raws)

    async def _load_security_groups(self, target_ips: set[str], instance_ids: list[str], full_refresh: bool) -> None:
        ec2 = self._ec2
        wanted: set[str] = {g for lb in self._load_balancers.values() for g in lb.security_groups}
        wanted |= {g for ip in target_ips if ip in ec2.interfaces_by_ip for g in ec2.interfaces_by_ip[ip].group_ids}
        wanted |= {g for i in instance_ids if i in ec2.instances for g in ec2.instances[i].group_ids}
        missing = sorted(wanted if full_refresh else wanted - set(ec2.security_groups))
        if not missing:
            return
        found: dict[str, SecurityGroup] = {} if full_refresh else dict(ec2.security_groups)
        for chunk in _chunks(missing, FILTER_VALUES):
            raws = await self._ec2_pages(
                "describe_security_groups", "SecurityGroups", Filters=[{"Name": "group-id", "Values": list(chunk)}]
            )
            found.update((g.id, g) for g in self._parse_all(parse.security_group, raws))
        ec2.security_groups = found

    async def _load_subnets(self, vpc_ids: list[str]) -> None:
        if not vpc_ids:
            return
        raws = await self._ec2_pages("describe_subnets", "Subnets", Filters=_vpc_filter(vpc_ids))
        self._ec2.subnets = {s.id: s for s in self._parse_all(parse.subnet, raws)}

    async def _load_nacls(self, vpc_ids: list[str]) -> None:
        if not vpc_ids:
            return
        raws = await self._ec2_pages("describe_network_acls", "NetworkAcls", Filters=_vpc_filter(vpc_ids))
        self._ec2.network_acls = tuple(self._parse_all(parse.network_acl, raws))

    async def _load_route_tables(self, vpc_ids: list[str]) -> None:
        if not vpc_ids:
            return
        raws = await self._ec2_pages("describe_route_tables", "RouteTables", Filters=_vpc_filter(vpc_ids))
        self._ec2.route_tables = tuple(self._parse_all(parse.route_table, raws))
