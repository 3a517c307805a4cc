"""The AWS side in one object, for the cluster role and ``lbdoctor diagnose``.

    doctor = AwsDoctor(AwsSettings(cluster_name="prod"), errors=self_metrics)
    round_ = await doctor.refresh(snapshot, plan=plan, probes=statuses)   # one round; paced
    round_.results            # elb_target_health, security_groups, network results, roots first
    round_.targets            # rows for lbdoctor_elb_target_state
    render_aws(round_)        # exporter.aws.metrics: the AWS metric families, no I/O
    round_.targetgroups_document(iso_now)   # what node agents read (schema lbdoctor.targetgroups/v1)
    doctor.close()

``refresh(..., full=True)`` asks for everything at once (diagnose). Between rounds the doctor keeps
its caches; call ``refresh`` again every few seconds and it asks only for what is due.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence

from exporter.aws.api import AwsApi, ClientFactory
from exporter.aws.collect import AwsCollector
from exporter.aws.config import AwsSettings
from exporter.aws.limiter import TokenBucket
from exporter.checks.aws_round import AwsRound, evaluate_aws
from exporter.checks.controller import RECONCILE_FAILURES
from exporter.checks.elb_correlation import failing
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import LbPlan, build_plan
from exporter.lb.targets import TargetStatus
from exporter.model.snapshot import ClusterSnapshot
from exporter.telemetry import ErrorSink


class AwsDoctor:
    def __init__(
        self,
        settings: AwsSettings,
        *,
        errors: ErrorSink | None = None,
        client_factory: ClientFactory | None = None,
        api: AwsApi | None = None,
    ) -> None:
        self.settings = settings
        self.api = api or AwsApi(
            region=settings.region,
            retry_mode=settings.retry_mode,
            max_attempts=settings.max_attempts,
            elbv2_limiter=TokenBucket(settings.elbv2_rate, settings.elbv2_burst),
            ec2_limiter=TokenBucket(settings.ec2_rate, settings.ec2_burst),
            cloudwatch_limiter=TokenBucket(settings.cloudwatch_rate, settings.cloudwatch_burst),
            workers=settings.workers,
            endpoint_url=settings.endpoint_url,
            client_factory=client_factory,
        )
        self.collector = AwsCollector(self.api, settings, errors)
        self._events_seen: frozenset[tuple[str, int, str]] = frozenset()

    async def refresh(
        self,
        snapshot: ClusterSnapshot,
        *,
        plan: LbPlan | None = None,
        probes: Sequence[TargetStatus] = (),
        waiting: Iterable[str] = (),
        now: float | None = None,
        full: bool = False,
    ) -> AwsRound:
        """Ask AWS for what is due, then run the AWS checks. Never raises for AWS errors: they become
        ``unknown`` results naming the IAM action.

        What the API server and the node agents know says which target groups to read first: a failing
        probe, ``waiting`` (ARNs of target groups pods wait on through their readiness gates), and a new
        reconcile failure the controller reported on a TargetGroupBinding."""
        moment = time.time() if now is None else now
        hot = {p.target.request.ip for p in probes if failing(p)}
        aws = await self.collector.collect(
            snapshot,
            moment,
            hot_targets=hot,
            hot_groups=waiting,
            triggered_groups=self._binding_failures(snapshot),
            full=full,
        )
        plan = plan if plan is not None else build_plan(snapshot, ControllerConfig())
        # The checks are pure but not free (about 65 ms per 1,000 targets): off the event loop.
        return await asyncio.to_thread(evaluate_aws, snapshot, aws, plan, tuple(probes), moment)

    def _binding_failures(self, snapshot: ClusterSnapshot) -> list[str]:
        """ARNs of TargetGroupBindings with a reconcile failure not seen in an earlier round."""
        failures = {
            event.meta.key: event
            for event in snapshot.events.values()
            if event.object_kind == "TargetGroupBinding" and event.reason in RECONCILE_FAILURES
        }
        seen = frozenset((key, event.count, event.last_seen) for key, event in failures.items())
        new = seen - self._events_seen
        self._events_seen = seen
        arns = []
        for key, _, _ in new:
            event = failures[key]
            binding = snapshot.target_group_bindings.get(f"{event.object_namespace}/{event.object_name}")
            if binding is not None and binding.target_group_arn:
                arns.append(binding.target_group_arn)
        return arns

    def close(self) -> None:
        self.api.close()
