"""docs/iam-policy.json is the whole of what lbdoctor asks AWS, proven against moto enforcing IAM."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from exporter.aws.api import OPERATIONS
from exporter.aws.doctor import AwsDoctor
from exporter.model.results import Status
from tests.aws.helpers import enforce_iam, iam_user, settings
from tests.aws.world import REGION, World

POLICY_PATH = Path(__file__).resolve().parents[2] / "docs" / "iam-policy.json"


def policy() -> dict[str, Any]:
    return json.loads(POLICY_PATH.read_text())  # type: ignore[no-any-return]


def policy_actions() -> set[str]:
    document = policy()
    actions: set[str] = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        assert statement["Resource"] == "*"
        actions.update(statement["Action"])
    return actions


def test_the_policy_is_read_only_and_matches_the_code() -> None:
    """Every operation the code may call is in the policy, and the policy grants nothing else."""
    actions = policy_actions()
    assert {action for _, action in OPERATIONS.values()} == actions
    assert all(action.split(":")[1].startswith(("Describe", "GetMetricData")) for action in actions)


async def test_a_full_round_needs_nothing_outside_the_policy(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """With moto enforcing IAM for a user holding exactly the policy, a full round reads everything, and
    every operation botocore sends (recorded on the real clients) is one the policy allows."""
    # moto authorises CloudWatch calls under its signing name (monitoring:GetMetricData) where AWS uses
    # cloudwatch:GetMetricData; the user also gets moto's spelling of that one action, nothing more.
    document = policy()
    document["Statement"].append({"Effect": "Allow", "Action": ["monitoring:GetMetricData"], "Resource": "*"})
    key, secret = iam_user(world, document)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    enforce_iam(world)
    sent: list[str] = []

    def client(service: str) -> Any:
        made = boto3.session.Session(region_name=REGION).client(service)
        # The IAM service prefix: elasticloadbalancing and ec2 sign with it; CloudWatch signs as "monitoring".
        prefix = {"monitoring": "cloudwatch"}.get(made.meta.service_model.signing_name, made.meta.service_model.signing_name)
        made.meta.events.register("before-call", lambda model, **_: sent.append(f"{prefix}:{model.name}"))
        return made

    doctor = AwsDoctor(settings(cloudwatch="on"), client_factory=client)
    try:
        round_ = await doctor.refresh(world.snapshot(), plan=world.plan(), now=1000.0, full=True)
        # The daemon's rounds also ask CloudWatch, the change detector.
        daemon = await doctor.refresh(world.snapshot(), plan=world.plan(), now=time.time())
    finally:
        doctor.close()
    assert [r.message for r in round_.results if r.status is not Status.OK] == []
    assert set(sent) <= policy_actions()
    assert {"elasticloadbalancing:DescribeTargetHealth", "ec2:DescribeNetworkAcls", "cloudwatch:GetMetricData"} <= set(sent)
    assert not any(outcome != "success" for _, outcome in daemon.aws.api_requests)
