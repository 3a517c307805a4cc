"""AWS answers -> the model, tolerant of what moto or AWS leave out; failures classified with the IAM action."""

from __future__ import annotations

import botocore.exceptions
import pytest

from exporter.aws import parse
from exporter.aws.api import OPERATIONS, classify
from exporter.aws.model import ProblemKind


def test_a_sparse_target_group_gets_defaults() -> None:
    group = parse.target_group({"TargetGroupArn": "arn:aws:elasticloadbalancing:r:1:targetgroup/web/abc"})
    assert (group.name, group.target_type, group.health_check.port, group.ip_address_type) == (
        "web",
        "instance",
        "traffic-port",
        "ipv4",
    )


def test_entries_without_their_id_are_malformed() -> None:
    with pytest.raises(parse.MalformedEntry, match="target group without TargetGroupArn"):
        parse.target_group({"TargetGroupName": "x"})
    with pytest.raises(parse.MalformedEntry):
        parse.target_health({"Target": {}, "TargetHealth": {"State": "healthy"}})


def test_target_health_keeps_aws_words() -> None:
    health = parse.target_health(
        {
            "Target": {"Id": "10.0.0.1", "Port": 8080, "AvailabilityZone": "all"},
            "HealthCheckPort": "8081",
            "TargetHealth": {"State": "unhealthy", "Reason": "Target.Timeout", "Description": "Request timed out"},
        }
    )
    assert (health.state, health.reason, health.description, health.availability_zone, health.health_check_port) == (
        "unhealthy",
        "Target.Timeout",
        "Request timed out",
        "all",
        "8081",
    )


def test_nacl_entries_with_ipv6_and_port_ranges() -> None:
    acl = parse.network_acl(
        {
            "NetworkAclId": "acl-1",
            "Associations": [{"SubnetId": "subnet-1"}],
            "Entries": [
                {"RuleNumber": 90, "Protocol": "6", "RuleAction": "deny", "Egress": False, "Ipv6CidrBlock": "::/0", "PortRange": {"From": 22, "To": 22}},
                {"RuleNumber": 100, "Protocol": "-1", "RuleAction": "allow", "Egress": False, "CidrBlock": "0.0.0.0/0"},
                {"Protocol": "-1", "RuleAction": "allow"},  # no number, no CIDR: unusable, skipped
            ],
        }
    )
    assert [(e.rule_number, e.cidr, e.port_from, e.allow) for e in acl.entries] == [
        (90, "::/0", 22, False),
        (100, "0.0.0.0/0", None, True),
    ]


def test_an_instance_uses_its_primary_interface_groups() -> None:
    instance = parse.instance(
        {
            "InstanceId": "i-1",
            "State": {"Name": "running"},
            "SecurityGroups": [{"GroupId": "sg-all"}],
            "NetworkInterfaces": [
                {"Attachment": {"DeviceIndex": 1}, "Groups": [{"GroupId": "sg-secondary"}]},
                {"Attachment": {"DeviceIndex": 0}, "Groups": [{"GroupId": "sg-primary"}]},
            ],
        }
    )
    assert instance.group_ids == ("sg-primary",)


def _client_error(code: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": "words"}}, "DescribeTargetHealth")


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (_client_error("AccessDenied"), ProblemKind.ACCESS_DENIED),
        (_client_error("UnauthorizedOperation"), ProblemKind.ACCESS_DENIED),
        (_client_error("Throttling"), ProblemKind.THROTTLED),
        (_client_error("RequestLimitExceeded"), ProblemKind.THROTTLED),
        (_client_error("TargetGroupNotFound"), ProblemKind.NOT_FOUND),
        (_client_error("InvalidGroup.NotFound"), ProblemKind.NOT_FOUND),
        (_client_error("InternalFailure"), ProblemKind.ERROR),
        (botocore.exceptions.NoCredentialsError(), ProblemKind.NO_CREDENTIALS),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), ProblemKind.UNREACHABLE),
        (botocore.exceptions.NoRegionError(), ProblemKind.ERROR),
    ],
)
def test_failures_name_the_iam_action(error: Exception, kind: ProblemKind) -> None:
    problem = classify("describe_target_health", error)
    assert problem.kind is kind
    assert problem.action == "elasticloadbalancing:DescribeTargetHealth"
    assert "elasticloadbalancing:DescribeTargetHealth" in problem.message


def test_only_read_operations_exist() -> None:
    """Describe* calls, and CloudWatch's GetMetricData (the change detector): nothing that writes."""
    assert all(name.startswith("describe_") or name == "get_metric_data" for name in OPERATIONS)


def test_eks_cluster_names_come_from_kubeconfig_arns() -> None:
    from exporter.aws.ids import eks_cluster_of, instance_id_of

    assert eks_cluster_of("arn:aws:eks:eu-west-1:123456789012:cluster/prod") == ("eu-west-1", "prod")
    assert eks_cluster_of("arn:aws-cn:eks:cn-north-1:123456789012:cluster/a-b") == ("cn-north-1", "a-b")
    assert eks_cluster_of("kind-local") is None
    assert eks_cluster_of("arn:aws:iam::123456789012:role/x") is None
    assert instance_id_of("aws:///us-east-1a/i-0abc") == "i-0abc"
    assert instance_id_of("kind://docker/kind/kind-control-plane") is None
