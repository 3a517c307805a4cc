"""A plain, typed picture of what AWS said: target groups, target health, load balancers and the VPC.

Produced by ``exporter.aws.collect`` from Describe* answers, consumed by pure checks. Nothing here
knows boto3. Mappings are read-only by convention.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

TRAFFIC_PORT = "traffic-port"

# ELBv2 target states (botocore elbv2 TargetHealthStateEnum), in the order metrics list them.
TARGET_STATES = ("initial", "healthy", "unhealthy", "unhealthy.draining", "unused", "draining", "unavailable")

# Target group types whose targets are not pods or nodes: lbdoctor skips them with a reason.
UNSUPPORTED_TARGET_TYPES = ("lambda", "alb")


@dataclass(frozen=True, slots=True)
class HealthCheckSettings:
    """A target group's real health check. ``port`` is ``traffic-port`` or a number, as AWS says it."""

    enabled: bool = True
    protocol: str | None = None
    port: str = TRAFFIC_PORT
    path: str | None = None
    http_codes: str | None = None
    grpc_codes: str | None = None
    interval: int | None = None
    timeout: int | None = None
    healthy_threshold: int | None = None
    unhealthy_threshold: int | None = None


@dataclass(frozen=True, slots=True)
class TargetGroup:
    arn: str
    name: str
    target_type: str  # instance | ip | lambda | alb
    protocol: str | None = None
    port: int | None = None
    vpc_id: str | None = None
    protocol_version: str | None = None
    ip_address_type: str = "ipv4"
    load_balancer_arns: tuple[str, ...] = ()
    health_check: HealthCheckSettings = field(default_factory=HealthCheckSettings)
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def supported(self) -> bool:
        return self.target_type not in UNSUPPORTED_TARGET_TYPES


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """One DescribeTargetHealth entry, reason and description verbatim."""

    id: str  # an IP address (ip targets) or an instance id (instance targets)
    port: int | None
    state: str
    reason: str | None = None
    description: str | None = None
    availability_zone: str | None = None  # "all": an IP outside the target group's VPC
    health_check_port: str | None = None


@dataclass(frozen=True, slots=True)
class TargetGroupHealth:
    arn: str
    targets: tuple[TargetHealth, ...]
    fetched_at: float


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    arn: str
    name: str
    type: str  # application | network | gateway
    scheme: str = "internal"
    vpc_id: str | None = None
    security_groups: tuple[str, ...] = ()
    subnet_ids: tuple[str, ...] = ()
    ip_address_type: str = "ipv4"


@dataclass(frozen=True, slots=True)
class SgRule:
    """One IpPermission. ``protocol`` is ``-1`` (all), a name (``tcp``) or a number (``6``)."""

    protocol: str
    from_port: int | None = None
    to_port: int | None = None
    cidrs: tuple[str, ...] = ()  # IPv4 and IPv6 ranges together
    group_ids: tuple[str, ...] = ()
    prefix_list_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SecurityGroup:
    id: str
    name: str = ""
    vpc_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    ingress: tuple[SgRule, ...] = ()
    egress: tuple[SgRule, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkInterface:
    id: str
    subnet_id: str | None
    vpc_id: str | None
    private_ips: tuple[str, ...]  # every IPv4 and IPv6 address of the interface
    group_ids: tuple[str, ...] = ()
    instance_id: str | None = None
    interface_type: str = "interface"
    description: str = ""


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    state: str = "running"
    subnet_id: str | None = None
    vpc_id: str | None = None
    private_ip: str | None = None
    group_ids: tuple[str, ...] = ()  # of the primary interface: what an LB's traffic meets


@dataclass(frozen=True, slots=True)
class Subnet:
    id: str
    vpc_id: str | None
    cidr: str | None
    ipv6_cidrs: tuple[str, ...] = ()
    availability_zone: str | None = None

    @property
    def cidrs(self) -> tuple[str, ...]:
        return ((self.cidr,) if self.cidr else ()) + self.ipv6_cidrs


@dataclass(frozen=True, slots=True)
class NaclEntry:
    rule_number: int
    protocol: str  # "-1" all, or an IANA number as a string ("6" TCP, "17" UDP)
    allow: bool
    egress: bool
    cidr: str  # IPv4 or IPv6
    port_from: int | None = None
    port_to: int | None = None


@dataclass(frozen=True, slots=True)
class NetworkAcl:
    id: str
    vpc_id: str | None
    subnet_ids: tuple[str, ...]
    entries: tuple[NaclEntry, ...]
    is_default: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    destination: str | None  # a CIDR; None for a prefix-list destination
    target: str  # "local", igw-…, nat-…, eni-…, pcx-…, tgw-…, or "unknown"
    state: str = "active"  # active | blackhole
    prefix_list_id: str | None = None


@dataclass(frozen=True, slots=True)
class RouteTable:
    id: str
    vpc_id: str | None
    subnet_ids: tuple[str, ...]
    main: bool
    routes: tuple[Route, ...]


@dataclass(frozen=True, slots=True)
class Vpc:
    id: str
    cidrs: tuple[str, ...]  # IPv4 and IPv6


class Topic(enum.StrEnum):
    """The parts of the picture that are fetched separately and can fail separately."""

    TARGET_GROUPS = "target_groups"
    TAGS = "tags"
    LOAD_BALANCERS = "load_balancers"
    INSTANCES = "instances"
    NETWORK_INTERFACES = "network_interfaces"
    SECURITY_GROUPS = "security_groups"
    SUBNETS = "subnets"
    NETWORK_ACLS = "network_acls"
    ROUTE_TABLES = "route_tables"
    VPCS = "vpcs"


class ProblemKind(enum.StrEnum):
    NO_CREDENTIALS = "no_credentials"
    ACCESS_DENIED = "access_denied"
    THROTTLED = "throttled"
    NOT_FOUND = "not_found"
    UNREACHABLE = "unreachable"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ApiProblem:
    """Why part of the picture is missing: the IAM action that failed and how."""

    action: str  # elasticloadbalancing:DescribeTargetHealth, ec2:DescribeNetworkAcls, …
    kind: ProblemKind
    message: str


@dataclass(frozen=True, slots=True)
class TargetTrack:
    """What lbdoctor remembers of one target across refreshes."""

    state: str
    since: float  # when lbdoctor first saw it in this state
    transitions: int = 0  # healthy <-> unhealthy changes seen since lbdoctor started


TargetKey = tuple[str, str, int | None]  # target group ARN, target id, port


@dataclass(frozen=True)
class AwsSnapshot:
    """Everything one round learned from AWS. Parts that could not be read are named in ``problems``
    (topology) or ``health_problems`` (per target group), so checks can say ``unknown`` and why."""

    cluster: str = ""
    region: str = ""
    taken_at: float = 0.0
    target_groups: Mapping[str, TargetGroup] = field(default_factory=dict)  # the cluster's, by ARN
    bound_arns: frozenset[str] = frozenset()  # referenced by a TargetGroupBinding
    missing: Mapping[str, ApiProblem] = field(default_factory=dict)  # bound ARNs AWS does not know
    health: Mapping[str, TargetGroupHealth] = field(default_factory=dict)
    health_problems: Mapping[str, ApiProblem] = field(default_factory=dict)
    load_balancers: Mapping[str, LoadBalancer] = field(default_factory=dict)
    instances: Mapping[str, Instance] = field(default_factory=dict)
    interfaces_by_ip: Mapping[str, NetworkInterface] = field(default_factory=dict)
    security_groups: Mapping[str, SecurityGroup] = field(default_factory=dict)
    subnets: Mapping[str, Subnet] = field(default_factory=dict)
    network_acls: tuple[NetworkAcl, ...] = ()
    route_tables: tuple[RouteTable, ...] = ()
    vpcs: Mapping[str, Vpc] = field(default_factory=dict)
    problems: Mapping[Topic, ApiProblem] = field(default_factory=dict)
    history: Mapping[TargetKey, TargetTrack] = field(default_factory=dict)
    api_requests: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (operation, outcome) -> count
    target_health_reads: Mapping[str, int] = field(default_factory=dict)  # trigger -> DescribeTargetHealth calls
    budgets: Mapping[str, tuple[float, int]] = field(default_factory=dict)  # service -> (calls a second, burst)
    budget_waited: Mapping[str, float] = field(default_factory=dict)  # service -> seconds held back by the budget
    cloudwatch_watched: int = 0  # target groups the CloudWatch change detector watched last

    @property
    def oldest_read_at(self) -> float | None:
        """When the stalest target-health verdict lbdoctor holds was read (None: none held)."""
        return min((h.fetched_at for h in self.health.values()), default=None)

    @cached_property
    def _nacl_by_subnet(self) -> Mapping[str, NetworkAcl]:
        return {subnet: acl for acl in self.network_acls for subnet in acl.subnet_ids}

    @cached_property
    def _route_table_by_subnet(self) -> Mapping[str, RouteTable]:
        return {subnet: table for table in self.route_tables for subnet in table.subnet_ids}

    @cached_property
    def _main_route_table(self) -> Mapping[str | None, RouteTable]:
        return {table.vpc_id: table for table in self.route_tables if table.main}

    def nacl_of(self, subnet_id: str) -> NetworkAcl | None:
        return self._nacl_by_subnet.get(subnet_id)

    def route_table_of(self, subnet_id: str, vpc_id: str | None) -> RouteTable | None:
        """The subnet's explicit route table, else its VPC's main table (as AWS routes)."""
        return self._route_table_by_subnet.get(subnet_id) or self._main_route_table.get(vpc_id)

    def problem(self, *topics: Topic) -> ApiProblem | None:
        for topic in topics:
            found = self.problems.get(topic)
            if found is not None:
                return found
        return None
