"""The AWS side's settings, separate from exporter.settings so the adapter and bench need no daemon."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exporter.settings import Settings


@dataclass(frozen=True)
class AwsSettings:
    cluster_name: str
    region: str | None = None  # None: the standard chain (AWS_REGION, profile, instance metadata)
    retry_mode: str = "standard"  # botocore retry mode: standard | adaptive
    max_attempts: int = 3
    # lbdoctor's share of the account's ELBv2 Describe* bucket (40 tokens; AWS's guide refills it
    # at 10 a second): a fifth of the refill, so the controller and the console keep the rest.
    elbv2_rate: float = 2.0
    elbv2_burst: int = 10
    # EC2 buckets are per API and larger (Describe* typically 100 tokens, 20 a second); lbdoctor
    # needs a handful of calls every topology refresh.
    ec2_rate: float = 2.0
    ec2_burst: int = 10
    target_health_interval: float = 60.0  # target groups whose targets are all healthy
    hot_interval: float = 15.0  # target groups with an unhealthy target or a failing probe
    topology_interval: float = 300.0  # target group settings, LBs, SGs, NACLs, routes, subnets
    round_seconds: float = 5.0  # one round's budget of DescribeTargetHealth calls, in limiter time
    # The change detector: CloudWatch's UnHealthyHostCount of every cold target group, 500 a call.
    # auto: only when the ELBv2 budget cannot read every target group within target_health_interval.
    cloudwatch: str = "auto"  # auto | on | off
    cloudwatch_interval: float = 60.0
    cloudwatch_rate: float = 1.0
    cloudwatch_burst: int = 5
    workers: int = 8  # threads making AWS calls
    endpoint_url: str | None = None  # None: botocore's own AWS_ENDPOINT_URL handling

    def __post_init__(self) -> None:
        if not self.cluster_name:
            raise ValueError("the AWS checks need the cluster name (cluster_name): the controller tags with it")
        if self.cloudwatch not in ("auto", "on", "off"):
            raise ValueError(f"cloudwatch must be auto, on or off, not {self.cloudwatch!r}")

    @property
    def sweep_capacity(self) -> int:
        """Target groups the ELBv2 budget reads within ``target_health_interval``, leaving a quarter of
        it for hot target groups and topology refreshes. Above it, the sweep alone is too slow."""
        return int(self.elbv2_rate * self.target_health_interval * 0.75)

    @classmethod
    def from_settings(cls, settings: Settings) -> AwsSettings:
        """From the daemon's settings (``cluster_name`` and the ``aws_*`` fields)."""
        return cls(
            cluster_name=settings.cluster_name or "",
            region=settings.aws_region,
            retry_mode=settings.aws_retry_mode,
            max_attempts=settings.aws_max_attempts,
            elbv2_rate=settings.aws_elbv2_requests_per_second,
            elbv2_burst=settings.aws_elbv2_burst,
            ec2_rate=settings.aws_ec2_requests_per_second,
            ec2_burst=settings.aws_ec2_burst,
            target_health_interval=settings.aws_target_health_interval_seconds,
            hot_interval=settings.aws_target_health_hot_interval_seconds,
            topology_interval=settings.aws_topology_interval_seconds,
            cloudwatch=settings.aws_cloudwatch,
            cloudwatch_interval=settings.aws_cloudwatch_interval_seconds,
        )
