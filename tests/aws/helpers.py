"""Run the AWS side against moto and pick results out of a round."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from exporter.aws.config import AwsSettings
from exporter.aws.doctor import AwsDoctor
from exporter.checks import health_probe
from exporter.checks.aws_round import AwsRound
from exporter.checks.causes import link, order
from exporter.lb.targets import TargetStatus
from exporter.model.results import Check, CheckResult
from tests.aws.world import CLUSTER, REGION, World


def settings(**overrides: Any) -> AwsSettings:
    return AwsSettings(**{"cluster_name": CLUSTER, "region": REGION, **overrides})


class ErrorLog:
    """Collects what would go to lbdoctor_errors_total{component,kind}."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def error(self, component: str, kind: str) -> None:
        self.seen.append((component, kind))


async def diagnose(
    world: World, probes: Sequence[TargetStatus] = (), errors: ErrorLog | None = None, **overrides: Any
) -> AwsRound:
    """One full round against moto, as ``lbdoctor diagnose`` runs it; with ``probes``, linked by the causal
    rules together with the node agents' ``health_probe`` verdicts on them, as the cluster role links it."""
    doctor = AwsDoctor(settings(**overrides), errors=errors)
    try:
        round_ = await doctor.refresh(world.snapshot(), plan=world.plan(), probes=probes, now=1000.0, full=True)
    finally:
        doctor.close()
    verdicts = [health_probe.verdict(probe, 1000.0) for probe in probes]
    return replace(round_, results=order(link([*round_.results, *verdicts])))


def results(round_: AwsRound, check: Check, *, pod: str | None = None, ip: str | None = None) -> list[CheckResult]:
    found = [r for r in round_.results if r.check is check]
    if pod is not None:
        found = [r for r in found if r.target is not None and r.target.pod == pod]
    if ip is not None:
        found = [r for r in found if r.target is not None and r.target.ip == ip]
    return found


def one(round_: AwsRound, check: Check, **where: Any) -> CheckResult:
    found = results(round_, check, **where)
    assert len(found) == 1, [f"{r.status} {r.reason} {r.message}" for r in found]
    return found[0]


def reasons(found: Sequence[CheckResult]) -> set[str]:
    return {r.reason.value for r in found if r.reason is not None}


def iam_user(world: World, policy: dict[str, Any], name: str = "lbdoctor") -> tuple[str, str]:
    """An IAM user in moto with exactly this inline policy; returns its access key id and secret."""
    import boto3

    iam = boto3.client("iam", region_name=REGION, endpoint_url=world.url)
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="lbdoctor", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


def enforce_iam(world: World) -> None:
    """From now on moto authorises every request against the caller's IAM policies (reset after the test)."""
    from tests.aws.conftest import moto_post

    moto_post(world.url, "/moto-api/reset-auth", b"0")
