"""What checks return: results with a status, a reason from a closed set, a message and a remedy."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "unknown"

    @property
    def severity(self) -> int:
        """Order for "worst of": fail > warn > unknown > ok."""
        return _SEVERITY[self]


_SEVERITY = {Status.OK: 0, Status.UNKNOWN: 1, Status.WARN: 2, Status.FAIL: 3}


class Check(enum.StrEnum):
    """The runbook's steps. Public contract: dashboards, alerts and users' automation key on these."""

    POD_STATUS = "pod_status"
    SELECTOR = "selector"
    ENDPOINTS = "endpoints"
    TRAFFIC_POLICY = "traffic_policy"
    SECURITY_GROUPS = "security_groups"
    TARGET_PORT = "target_port"
    CONTROLLER = "controller"
    INGRESS_ANNOTATIONS = "ingress_annotations"
    SERVICE_ANNOTATIONS = "service_annotations"
    HEALTH_PROBE = "health_probe"
    NETWORK = "network"
    KUBE_PROXY = "kube_proxy"
    ELB_TARGET_HEALTH = "elb_target_health"
    GATEWAY_CONFIG = "gateway_config"  # Gateway API routes and the controller's TargetGroupConfigurations
    ROLLOUT = "rollout"  # deregistration delay vs termination: the 5xx window during rollouts and node churn


class Reason(enum.StrEnum):
    """Closed set of failure reasons (CamelCase). Add freely; never rename without a deprecation note."""

    # pod_status
    POD_NOT_RUNNING = "PodNotRunning"
    CONTAINER_NOT_READY = "ContainerNotReady"
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
    READINESS_GATE_NOT_READY = "ReadinessGateNotReady"
    POD_HAS_NO_IP = "PodHasNoIP"
    # selector / endpoints
    NO_PODS_MATCH_SELECTOR = "NoPodsMatchSelector"
    SELECTOR_MISSING = "SelectorMissing"
    NO_ENDPOINTS = "NoEndpoints"
    NO_READY_ENDPOINTS = "NoReadyEndpoints"
    # traffic_policy
    EXTERNAL_TRAFFIC_POLICY_LOCAL = "ExternalTrafficPolicyLocal"
    # target_port
    TARGET_PORT_NOT_EXPOSED = "TargetPortNotExposed"
    NAMED_PORT_NOT_FOUND = "NamedPortNotFound"
    # annotations
    INVALID_ANNOTATION = "InvalidAnnotation"
    INVALID_SUCCESS_CODES = "InvalidSuccessCodes"
    INSTANCE_TARGET_NEEDS_NODE_PORT = "InstanceTargetNeedsNodePort"
    HEALTH_CHECK_PORT_NOT_IN_SERVICE = "HealthCheckPortNotInService"
    PATH_IGNORED_FOR_TCP_HEALTH_CHECK = "PathIgnoredForTcpHealthCheck"
    INTERVAL_SHORTER_THAN_TIMEOUT = "IntervalShorterThanTimeout"
    UNSUPPORTED_HEALTH_CHECK = "UnsupportedHealthCheck"
    BACKEND_NOT_FOUND = "BackendNotFound"
    INVALID_TARGET_GROUP_ATTRIBUTES = "InvalidTargetGroupAttributes"
    IPV6_REQUIRES_DUALSTACK = "Ipv6RequiresDualstack"  # an IPv6 Service behind an IPv4-only load balancer
    NODE_WITHOUT_IPV6_ADDRESS = "NodeWithoutIpv6Address"  # instance targets of an IPv6 target group
    NOT_SUPPORTED_BY_AUTO_MODE = "NotSupportedByAutoMode"
    # gateway_config (Gateway API through the AWS Load Balancer Controller)
    INVALID_CONFIGURATION = "InvalidConfiguration"
    GATEWAY_NOT_FOUND = "GatewayNotFound"
    ROUTE_NOT_ATTACHED = "RouteNotAttached"
    ROUTE_NOT_ACCEPTED = "RouteNotAccepted"
    LOAD_BALANCER_CONFIGURATION_NOT_FOUND = "LoadBalancerConfigurationNotFound"
    TARGET_GROUP_CONFIGURATION_NOT_FOUND = "TargetGroupConfigurationNotFound"
    CONFLICTING_TARGET_GROUP_CONFIGURATIONS = "ConflictingTargetGroupConfigurations"
    HEALTH_CHECK_CONFIG_REPLACES_DEFAULT = "HealthCheckConfigReplacesDefault"
    UDP_HEALTH_CHECK_IS_TCP = "UdpHealthCheckIsTcp"
    TOO_MANY_TARGET_GROUPS = "TooManyTargetGroups"  # more than lbdoctor probes for one object
    # controller
    CONTROLLER_NOT_FOUND = "ControllerNotFound"
    CONTROLLER_NOT_READY = "ControllerNotReady"
    CONTROLLER_ACCESS_DENIED = "ControllerAccessDenied"
    RECONCILE_FAILED = "ReconcileFailed"
    INGRESS_CLASS_NOT_FOUND = "IngressClassNotFound"
    TARGET_GROUP_BINDING_CRD_MISSING = "TargetGroupBindingCrdMissing"
    GATEWAY_CLASS_NOT_ACCEPTED = "GatewayClassNotAccepted"
    # controller, EKS Auto Mode: its controller runs outside the cluster, so its presence is read from the API
    AUTO_MODE_NOT_ENABLED = "AutoModeNotEnabled"
    INGRESS_CLASS_PARAMS_NOT_FOUND = "IngressClassParamsNotFound"
    # any check that could not look (RBAC)
    FORBIDDEN = "Forbidden"
    # health_probe (also the probe's own failure reasons)
    CONNECTION_REFUSED = "ConnectionRefused"
    TIMEOUT = "Timeout"
    RESPONSE_CODE_MISMATCH = "ResponseCodeMismatch"
    CONNECTION_RESET = "ConnectionReset"
    TLS_ERROR = "TlsError"
    INVALID_RESPONSE = "InvalidResponse"
    HOST_UNREACHABLE = "HostUnreachable"
    CONNECTION_ERROR = "ConnectionError"
    FLAPPING = "Flapping"
    NOT_PROBED_YET = "NotProbedYet"
    NODE_AGENT_UNREACHABLE = "NodeAgentUnreachable"  # the cluster role (or diagnose) cannot read a node's agent
    # kube_proxy
    SERVICE_RULES_MISSING = "ServiceRulesMissing"
    ENDPOINT_RULES_MISSING = "EndpointRulesMissing"
    STALE_ENDPOINT_RULES = "StaleEndpointRules"
    NODE_PORT_RULES_MISSING = "NodePortRulesMissing"
    KUBE_PROXY_UNHEALTHY = "KubeProxyUnhealthy"
    KUBE_PROXY_SYNC_STALE = "KubeProxySyncStale"
    KUBE_PROXY_NOT_FOUND = "KubeProxyNotFound"
    KUBE_PROXY_RULES_UNREADABLE = "KubeProxyRulesUnreadable"
    KUBE_PROXY_MODE_UNSUPPORTED = "KubeProxyModeUnsupported"
    KUBE_PROXY_RULES_FROM_ANOTHER_NODE = "KubeProxyRulesFromAnotherNode"
    # ---- AWS checks (elb_target_health, security_groups, network) --------------------------------
    # elb_target_health: ELBv2 TargetHealth reason codes, verbatim (docs/aws.md, "Target health reason codes")
    ELB_REGISTRATION_IN_PROGRESS = "Elb.RegistrationInProgress"
    ELB_INITIAL_HEALTH_CHECKING = "Elb.InitialHealthChecking"
    TARGET_RESPONSE_CODE_MISMATCH = "Target.ResponseCodeMismatch"
    TARGET_TIMEOUT = "Target.Timeout"
    TARGET_FAILED_HEALTH_CHECKS = "Target.FailedHealthChecks"
    ELB_INTERNAL_ERROR = "Elb.InternalError"
    TARGET_NOT_REGISTERED = "Target.NotRegistered"
    TARGET_NOT_IN_USE = "Target.NotInUse"
    TARGET_INVALID_STATE = "Target.InvalidState"
    TARGET_IP_UNUSABLE = "Target.IpUnusable"
    TARGET_DEREGISTRATION_IN_PROGRESS = "Target.DeregistrationInProgress"
    TARGET_HEALTH_CHECK_DISABLED = "Target.HealthCheckDisabled"
    # elb_target_health: lbdoctor's own findings
    ELB_UNKNOWN_REASON = "ElbUnknownReason"  # a state or reason newer than this release (verbatim in the message)
    PROBE_FAILING_ELB_HEALTHY = "ProbeFailingElbHealthy"  # the LB is about to mark the target unhealthy
    HEALTH_CHECK_DRIFT = "HealthCheckDrift"  # annotations and the real target group disagree
    TARGET_GROUP_NOT_FOUND = "TargetGroupNotFound"
    NO_REGISTERED_TARGETS = "NoRegisteredTargets"
    UNSUPPORTED_TARGET_TYPE = "UnsupportedTargetType"  # lambda / alb target groups
    TARGET_NOT_IN_CLUSTER = "TargetNotInCluster"
    # security_groups
    HEALTH_CHECK_PORT_NOT_ALLOWED = "HealthCheckPortNotAllowed"
    TRAFFIC_PORT_NOT_ALLOWED = "TrafficPortNotAllowed"
    NODE_GROUP_TRAFFIC_BLOCKED = "NodeGroupTrafficBlocked"
    MULTIPLE_CLUSTER_TAGGED_SECURITY_GROUPS = "MultipleClusterTaggedSecurityGroups"
    NO_CLUSTER_TAGGED_SECURITY_GROUP = "NoClusterTaggedSecurityGroup"
    PREFIX_LIST_NOT_VERIFIED = "PrefixListNotVerified"
    TARGET_OUTSIDE_VPC = "TargetOutsideVpc"
    TARGET_INTERFACE_NOT_FOUND = "TargetInterfaceNotFound"
    # network
    NACL_DENIES_HEALTH_CHECK = "NaclDeniesHealthCheck"
    NACL_DENIES_TRAFFIC = "NaclDeniesTraffic"
    NACL_DENIES_RETURN_TRAFFIC = "NaclDeniesReturnTraffic"
    MISSING_LOCAL_ROUTE = "MissingLocalRoute"
    BLACKHOLE_ROUTE = "BlackholeRoute"
    ROUTE_NOT_LOCAL = "RouteNotLocal"
    # rollout: pods or nodes stopping while the load balancer still sends to them
    NO_PRE_STOP_HOOK = "NoPreStopHook"
    GRACE_PERIOD_SHORTER_THAN_DEREGISTRATION_DELAY = "GracePeriodShorterThanDeregistrationDelay"
    PRE_STOP_LONGER_THAN_GRACE_PERIOD = "PreStopLongerThanGracePeriod"
    TERMINATED_WHILE_REGISTERED = "TerminatedWhileRegistered"
    # any AWS check that could not ask AWS
    AWS_CREDENTIALS_MISSING = "AwsCredentialsMissing"
    AWS_ACCESS_DENIED = "AwsAccessDenied"
    AWS_THROTTLED = "AwsThrottled"
    AWS_API_UNAVAILABLE = "AwsApiUnavailable"
    AWS_RESOURCE_NOT_FOUND = "AwsResourceNotFound"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    kind: str  # Service | Ingress | Pod | Node | TargetGroup | Deployment
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class TargetRef:
    pod: str | None
    ip: str | None
    port: int | None


# What a result is about, beyond its object: (kind, id) pairs such as ("pod", "shop/web-1"). The causal
# rules (exporter/checks/causes.py) link two results when they share a subject of the rule's kind;
# exporter/model/subjects.py builds them, so every check spells them alike.
Subject = tuple[str, str]


# A result's identity within a round, what ``caused_by`` points at: (check, object, target, reason, node).
# ``node`` is the vantage point, for results that depend on it (a probe, a node's kube-proxy rules). A plain
# tuple: reports build one per result several times over (a NamedTuple's constructor costs ten times more).
ResultKey = tuple[Check, ObjectRef, TargetRef | None, Reason | None, str | None]


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: Check
    status: Status
    reason: Reason | None
    object: ObjectRef
    message: str
    remedy: str = ""
    target: TargetRef | None = None
    caused_by: ResultKey | None = None  # the result this one follows from, when it is a consequence
    node: str | None = None  # where it was seen from: the probing node, the node whose kube-proxy rules
    about: tuple[Subject, ...] = ()  # what else it is about, for the causal rules

    @property
    def key(self) -> ResultKey:
        return (self.check, self.object, self.target, self.reason, self.node)


@dataclass(frozen=True)
class ResultSet:
    """One round of results, published in one swap; readers never see half a round.

    ``rollup`` is the worst status of each check per load balancer (exporter/model/rollup.py), as the role
    evaluated it unit by unit; None when nobody rolled the results up (a report of its own, a test): then
    each result is a row of its own object."""

    generation: int = 0
    produced_at: float = 0.0
    results: tuple[CheckResult, ...] = field(default_factory=tuple)
    rollup: Mapping[tuple[Check, ObjectRef], Status] | None = None

    def failing(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.status is Status.FAIL)
