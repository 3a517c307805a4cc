"""The real target-group settings the cluster role publishes for the node agents (pure).

See ``exporter.lb.aws_settings`` for the document and the node side's merge.
"""

from __future__ import annotations

from exporter.aws.mapping import ClusterIndex, GroupOwner
from exporter.aws.model import AwsSnapshot, TargetGroup
from exporter.lb.aws_settings import RealHealthCheck


def real_health_check(group: TargetGroup, owner: GroupOwner) -> RealHealthCheck | None:
    """None when AWS left out a setting lbdoctor needs to probe like the LB (never for a real target group)."""
    check = group.health_check
    numbers = (check.interval, check.timeout, check.healthy_threshold, check.unhealthy_threshold)
    if not group.supported or check.protocol is None or any(n is None for n in numbers):
        return None
    assert check.interval is not None
    assert check.timeout is not None
    assert check.healthy_threshold is not None
    assert check.unhealthy_threshold is not None
    grpc = (group.protocol_version or "").upper() == "GRPC"
    return RealHealthCheck(
        arn=group.arn,
        target_group=group.name,
        owner=owner.owner,
        service=owner.service,
        service_port=owner.service_port,
        target_type=group.target_type,
        protocol=check.protocol.upper(),
        port=int(check.port) if check.port.isdigit() else check.port,
        path=check.path,
        success_codes=check.grpc_codes if grpc else check.http_codes,
        protocol_version=group.protocol_version,
        interval=check.interval,
        timeout=check.timeout,
        healthy_threshold=check.healthy_threshold,
        unhealthy_threshold=check.unhealthy_threshold,
    )


def real_health_checks(aws: AwsSnapshot, index: ClusterIndex) -> tuple[RealHealthCheck, ...]:
    found = []
    for arn, group in sorted(aws.target_groups.items()):
        check = real_health_check(group, index.owner_of(arn, group))
        if check is not None:
            found.append(check)
    return tuple(found)
