"""The narrow AWS call: only listed operations, off the event loop, every request counted."""

from __future__ import annotations

import threading
from typing import Any

import botocore.exceptions
import pytest

from exporter.aws.api import AwsApi, AwsCallError
from exporter.aws.model import ProblemKind


class _Client:
    """Stands in for a botocore client: what it answers is what botocore would hand back after retrying."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def describe_target_health(self, **_: Any) -> dict[str, Any]:
        self.threads.append(threading.current_thread().name)
        return {"TargetHealthDescriptions": [], "ResponseMetadata": {"RetryAttempts": 2}}

    def describe_tags(self, **_: Any) -> dict[str, Any]:
        error = {"Error": {"Code": "Throttling", "Message": "Rate exceeded"}, "ResponseMetadata": {"RetryAttempts": 2}}
        raise botocore.exceptions.ClientError(error, "DescribeTags")


async def test_calls_run_in_the_aws_threads_and_retries_are_counted() -> None:
    client = _Client()
    api = AwsApi(client_factory=lambda _service: client)
    try:
        await api.call("describe_target_health", TargetGroupArn="arn")
        with pytest.raises(AwsCallError) as raised:
            await api.call("describe_tags", ResourceArns=["arn"])
    finally:
        api.close()
    assert client.threads[0].startswith("lbdoctor-aws")
    assert raised.value.problem.kind is ProblemKind.THROTTLED
    assert api.counts() == {
        ("DescribeTargetHealth", "success"): 1,
        ("DescribeTargetHealth", "retried"): 2,
        ("DescribeTags", "throttled"): 1,
        ("DescribeTags", "retried"): 2,
    }


async def test_operations_outside_the_policy_are_refused() -> None:
    api = AwsApi(client_factory=lambda _service: _Client())
    try:
        with pytest.raises(ValueError, match=r"not in exporter\.aws\.api\.OPERATIONS"):
            await api.call("delete_target_group", TargetGroupArn="arn")
    finally:
        api.close()


def test_findings_seen_twice_become_one_result_that_tells_both() -> None:
    """The result set keeps one result per object, target, reason and status: where a finding was seen
    twice (two LB subnets), both places survive in the one message."""
    from exporter.checks.aws_context import merge_same
    from exporter.model.results import Check, CheckResult, ObjectRef, Reason, Status, TargetRef

    owner, target = ObjectRef("Ingress", "shop", "web"), TargetRef("web-1", "10.0.10.21", 8080)

    def finding(message: str, remedy: str) -> CheckResult:
        return CheckResult(Check.NETWORK, Status.FAIL, Reason.NACL_DENIES_HEALTH_CHECK, owner, message, remedy, target)

    merged = merge_same(
        [
            finding("from 10.0.0.0/24", "allow it in acl-1"),
            finding("from 10.0.1.0/24", "allow it in acl-1"),
            finding("from 10.0.0.0/24", "allow it in acl-1"),
            CheckResult(Check.NETWORK, Status.OK, None, owner, "other target", target=TargetRef("web-2", "10.0.11.21", 8080)),
        ]
    )
    assert [r.message for r in merged] == ["from 10.0.0.0/24; also: from 10.0.1.0/24", "other target"]
    assert merged[0].remedy == "allow it in acl-1"
