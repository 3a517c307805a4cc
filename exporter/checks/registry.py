"""Every check, described once: its id, title, runbook position, where it runs, its reasons and its
``evaluate``. Whatever lists checks reads this: the node and cluster roles, ``lbdoctor diagnose`` and
its "not run" lines, the status page, the metrics, the causal rules' ordering, and the tables in
README.md, docs/design.md, docs/metrics.md and docs/diagnose.md (``python -m exporter.checks.registry``
rewrites them; a test keeps them equal).

Every check is ``evaluate(scope) -> Iterable[CheckResult]`` (``exporter.checks.context.Scope``).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter.checks import (
    controller,
    elb_target_health,
    endpoints,
    health_probe,
    kube_proxy,
    lb_annotations,
    network,
    pod_status,
    rollout,
    security_groups,
    selector,
    target_port,
    traffic_policy,
)
from exporter.model.results import Check, CheckResult, Reason

if TYPE_CHECKING:
    from exporter.checks.context import Scope

R = Reason


class Role(enum.StrEnum):
    NODE = "node"  # the node agent (DaemonSet)
    CLUSTER = "cluster"  # the cluster role (one active replica), and ``lbdoctor diagnose``


class Needs(enum.StrEnum):
    """What ``lbdoctor diagnose`` on a laptop needs to run a check."""

    NOTHING = "kubeconfig"
    NODE_AGENT = "node agent"  # pod IPs are rarely reachable from outside the VPC
    NODE_DUMP = "node agent or dump"  # the node's kube-proxy rules: the agent, or --node with a saved dump
    AWS = "aws"  # AWS credentials and the cluster's name


@dataclass(frozen=True)
class CheckSpec:
    check: Check
    title: str  # the step as the status page and diagnose's table name it
    step: str  # the runbook step in the runbook's own words
    reads: str  # what it looks at
    roles: frozenset[Role]
    reasons: tuple[Reason, ...]  # its closed set (warn and fail, and unknown when it could not look)
    examples: tuple[Reason, ...]  # the few README shows
    needs: Needs
    evaluate: Callable[[Scope], Iterable[CheckResult]]
    judges: frozenset[str]  # the parts of a Scope it reads: services, plans, controller, node, aws
    unknown_reasons: tuple[Reason, ...] = ()  # reasons only ``unknown`` results carry, listed apart in the docs

    @property
    def all_reasons(self) -> tuple[Reason, ...]:
        extra = AWS_PROBLEM_REASONS if self.needs is Needs.AWS else ()
        return (*self.reasons, *self.unknown_reasons, *extra)


NODE_AND_CLUSTER = frozenset({Role.NODE, Role.CLUSTER})
CLUSTER = frozenset({Role.CLUSTER})
NODE = frozenset({Role.NODE})

# Reasons of any AWS check that could not ask AWS (status unknown; the message names the IAM action).
AWS_PROBLEM_REASONS = (
    R.AWS_CREDENTIALS_MISSING,
    R.AWS_ACCESS_DENIED,
    R.AWS_THROTTLED,
    R.AWS_API_UNAVAILABLE,
    R.AWS_RESOURCE_NOT_FOUND,
)

# The runbook, in the order a person walks it.
REGISTRY: tuple[CheckSpec, ...] = (
    CheckSpec(
        Check.CONTROLLER,
        "AWS Load Balancer Controller",
        "AWS Load Balancer Controller (or EKS Auto Mode) there and permitted",
        "its Deployment, its pods' logs (`AccessDenied`/`UnauthorizedOperation` with the IAM action when AWS "
        "names it), Warning Events `FailedBuildModel`, `FailedDeployModel`, `BackendNotFound`, `FailedReconcile` "
        "on Ingresses/Services/TargetGroupBindings/routes, the `alb` IngressClass, the routes' GatewayClasses "
        "(`Accepted`); for EKS Auto Mode, which runs outside the cluster, whether its API "
        "(`ingressclassparams.eks.amazonaws.com`) is served and the IngressClassParams exist",
        CLUSTER,
        (
            R.CONTROLLER_NOT_FOUND,
            R.CONTROLLER_NOT_READY,
            R.CONTROLLER_ACCESS_DENIED,
            R.RECONCILE_FAILED,
            R.INGRESS_CLASS_NOT_FOUND,
            R.TARGET_GROUP_BINDING_CRD_MISSING,
            R.GATEWAY_CLASS_NOT_ACCEPTED,
            R.AUTO_MODE_NOT_ENABLED,
            R.INGRESS_CLASS_PARAMS_NOT_FOUND,
            R.FORBIDDEN,
        ),
        (
            R.CONTROLLER_NOT_FOUND,
            R.CONTROLLER_NOT_READY,
            R.CONTROLLER_ACCESS_DENIED,
            R.RECONCILE_FAILED,
            R.AUTO_MODE_NOT_ENABLED,
        ),
        Needs.NOTHING,
        controller.evaluate,
        frozenset({"plans", "controller"}),
    ),
    CheckSpec(
        Check.INGRESS_ANNOTATIONS,
        "Ingress annotations (ALB)",
        "Ingress annotations (ALB)",
        "every `alb.ingress.kubernetes.io/*` health-check, target-type, port and protocol annotation, merged with "
        "the backend Service's (the Service wins), `ip-address-type`, `target-group-attributes`, the IngressClass's "
        "IngressClassParams; EKS Auto Mode's Ingresses against what Auto Mode supports",
        NODE_AND_CLUSTER,
        (
            R.INVALID_ANNOTATION,
            R.INVALID_SUCCESS_CODES,
            R.INSTANCE_TARGET_NEEDS_NODE_PORT,
            R.HEALTH_CHECK_PORT_NOT_IN_SERVICE,
            R.INTERVAL_SHORTER_THAN_TIMEOUT,
            R.BACKEND_NOT_FOUND,
            R.INVALID_TARGET_GROUP_ATTRIBUTES,
            R.IPV6_REQUIRES_DUALSTACK,
            R.NODE_WITHOUT_IPV6_ADDRESS,
            R.NOT_SUPPORTED_BY_AUTO_MODE,
            R.TOO_MANY_TARGET_GROUPS,
        ),
        (
            R.INVALID_ANNOTATION,
            R.INVALID_SUCCESS_CODES,
            R.INSTANCE_TARGET_NEEDS_NODE_PORT,
            R.IPV6_REQUIRES_DUALSTACK,
            R.NOT_SUPPORTED_BY_AUTO_MODE,
        ),
        Needs.NOTHING,
        lb_annotations.evaluate_ingress,
        frozenset({"plans"}),
    ),
    CheckSpec(
        Check.SERVICE_ANNOTATIONS,
        "Service annotations (NLB)",
        "Service annotations (NLB)",
        "every `service.beta.kubernetes.io/aws-load-balancer-*` health-check annotation, `ip-address-type` against "
        "the Service's IP families, `target-group-attributes`; EKS Auto Mode's Services against what it supports",
        NODE_AND_CLUSTER,
        (
            R.INVALID_ANNOTATION,
            R.INVALID_SUCCESS_CODES,
            R.INSTANCE_TARGET_NEEDS_NODE_PORT,
            R.HEALTH_CHECK_PORT_NOT_IN_SERVICE,
            R.INTERVAL_SHORTER_THAN_TIMEOUT,
            R.PATH_IGNORED_FOR_TCP_HEALTH_CHECK,
            R.INVALID_TARGET_GROUP_ATTRIBUTES,
            R.IPV6_REQUIRES_DUALSTACK,
            R.NODE_WITHOUT_IPV6_ADDRESS,
            R.NOT_SUPPORTED_BY_AUTO_MODE,
            R.TOO_MANY_TARGET_GROUPS,
        ),
        (R.PATH_IGNORED_FOR_TCP_HEALTH_CHECK, R.INTERVAL_SHORTER_THAN_TIMEOUT),
        Needs.NOTHING,
        lb_annotations.evaluate_service,
        frozenset({"plans"}),
    ),
    CheckSpec(
        Check.GATEWAY_CONFIG,
        "Gateway API routes and TargetGroupConfigurations",
        "Gateway API routes and TargetGroupConfigurations",
        "each route of a `gateway.k8s.aws/alb` or `/nlb` GatewayClass: its parents (attached, accepted), its "
        "backend Services and ports, the TargetGroupConfigurations merged as the controller merges them (the "
        "Service's over the Gateway's or GatewayClass's default, shallow unless `mergingMode`), their health "
        "checks and target-group attributes",
        NODE_AND_CLUSTER,
        (
            R.INVALID_CONFIGURATION,
            R.INVALID_SUCCESS_CODES,
            R.INTERVAL_SHORTER_THAN_TIMEOUT,
            R.HEALTH_CHECK_PORT_NOT_IN_SERVICE,
            R.INSTANCE_TARGET_NEEDS_NODE_PORT,
            R.INVALID_TARGET_GROUP_ATTRIBUTES,
            R.BACKEND_NOT_FOUND,
            R.GATEWAY_NOT_FOUND,
            R.ROUTE_NOT_ATTACHED,
            R.ROUTE_NOT_ACCEPTED,
            R.LOAD_BALANCER_CONFIGURATION_NOT_FOUND,
            R.TARGET_GROUP_CONFIGURATION_NOT_FOUND,
            R.CONFLICTING_TARGET_GROUP_CONFIGURATIONS,
            R.HEALTH_CHECK_CONFIG_REPLACES_DEFAULT,
            R.UDP_HEALTH_CHECK_IS_TCP,
            R.IPV6_REQUIRES_DUALSTACK,
            R.NODE_WITHOUT_IPV6_ADDRESS,
            R.TOO_MANY_TARGET_GROUPS,
        ),
        (
            R.ROUTE_NOT_ATTACHED,
            R.BACKEND_NOT_FOUND,
            R.HEALTH_CHECK_CONFIG_REPLACES_DEFAULT,
            R.CONFLICTING_TARGET_GROUP_CONFIGURATIONS,
            R.INVALID_CONFIGURATION,
        ),
        Needs.NOTHING,
        lb_annotations.evaluate_gateway,
        frozenset({"plans"}),
    ),
    CheckSpec(
        Check.POD_STATUS,
        "Pod running, containers ready",
        "pod running, containers ready",
        "phase, container readiness, CrashLoopBackOff and other waiting reasons, `target-health.elbv2.k8s.aws/*` "
        "readiness gates with their AWS reason",
        NODE_AND_CLUSTER,
        (R.POD_NOT_RUNNING, R.CONTAINER_NOT_READY, R.CRASH_LOOP_BACK_OFF, R.READINESS_GATE_NOT_READY, R.POD_HAS_NO_IP),
        (R.CRASH_LOOP_BACK_OFF, R.CONTAINER_NOT_READY, R.READINESS_GATE_NOT_READY),
        Needs.NOTHING,
        pod_status.evaluate,
        frozenset({"services"}),
    ),
    CheckSpec(
        Check.SELECTOR,
        "Pod and Service label selectors",
        "pod and Service label selectors",
        "the Service's selector against the pods; a selector matching nothing names the near misses "
        "(`app=web-1` vs `app=web`)",
        CLUSTER,
        (R.NO_PODS_MATCH_SELECTOR, R.SELECTOR_MISSING, R.FORBIDDEN),
        (R.NO_PODS_MATCH_SELECTOR, R.SELECTOR_MISSING),
        Needs.NOTHING,
        selector.evaluate,
        frozenset({"services"}),
    ),
    CheckSpec(
        Check.ENDPOINTS,
        "Service endpoints",
        "missing endpoints",
        "the EndpointSlices: ready, serving, terminating",
        CLUSTER,
        (R.NO_ENDPOINTS, R.NO_READY_ENDPOINTS, R.FORBIDDEN),
        (R.NO_ENDPOINTS, R.NO_READY_ENDPOINTS),
        Needs.NOTHING,
        endpoints.evaluate,
        frozenset({"services"}),
    ),
    CheckSpec(
        Check.TARGET_PORT,
        "targetPort matches containerPort",
        "targetPort vs containerPort",
        "numeric and named targetPorts against the selected pods' container ports",
        NODE_AND_CLUSTER,
        (R.NAMED_PORT_NOT_FOUND, R.TARGET_PORT_NOT_EXPOSED),
        (R.NAMED_PORT_NOT_FOUND, R.TARGET_PORT_NOT_EXPOSED),
        Needs.NOTHING,
        target_port.evaluate,
        frozenset({"services"}),
    ),
    CheckSpec(
        Check.TRAFFIC_POLICY,
        "externalTrafficPolicy and target type",
        "externalTrafficPolicy Local vs Cluster",
        "`Local` with instance targets: which nodes have no ready local endpoint and will fail the health check",
        CLUSTER,
        (R.EXTERNAL_TRAFFIC_POLICY_LOCAL, R.FORBIDDEN),
        (R.EXTERNAL_TRAFFIC_POLICY_LOCAL,),
        Needs.NOTHING,
        traffic_policy.evaluate,
        frozenset({"services"}),
    ),
    CheckSpec(
        Check.HEALTH_PROBE,
        "Health check tested by hand (curl / nc)",
        "test the health check by hand (`curl`, `nc`, `grpcurl`)",
        "each pod (and an instance target's NodePort on its node) exactly as each of its target groups checks "
        "it: path, port, protocol (HTTP/1.1, gRPC over HTTP/2, TCP; over IPv4 or IPv6), success codes, timeout, "
        "thresholds",
        NODE,
        (
            R.CONNECTION_REFUSED,
            R.TIMEOUT,
            R.RESPONSE_CODE_MISMATCH,
            R.CONNECTION_RESET,
            R.TLS_ERROR,
            R.INVALID_RESPONSE,
            R.HOST_UNREACHABLE,
            R.CONNECTION_ERROR,
            R.FLAPPING,
            R.UNSUPPORTED_HEALTH_CHECK,
            R.NOT_PROBED_YET,
        ),
        (R.CONNECTION_REFUSED, R.TIMEOUT, R.RESPONSE_CODE_MISMATCH, R.TLS_ERROR, R.FLAPPING),
        Needs.NODE_AGENT,
        health_probe.evaluate,
        frozenset({"node"}),
        # The cluster role and diagnose, when a node's agent does not answer: its probes are not seen.
        unknown_reasons=(R.NODE_AGENT_UNREACHABLE,),
    ),
    CheckSpec(
        Check.KUBE_PROXY,
        "kube-proxy rules",
        "restart kube-proxy (stale iptables)",
        "this node's kube-proxy rules (`iptables-save` or `nft`) against the Services and EndpointSlices, "
        "kube-proxy's `/healthz` and sync metrics",
        NODE,
        (
            R.SERVICE_RULES_MISSING,
            R.ENDPOINT_RULES_MISSING,
            R.STALE_ENDPOINT_RULES,
            R.NODE_PORT_RULES_MISSING,
            R.KUBE_PROXY_UNHEALTHY,
            R.KUBE_PROXY_SYNC_STALE,
        ),
        (
            R.SERVICE_RULES_MISSING,
            R.ENDPOINT_RULES_MISSING,
            R.STALE_ENDPOINT_RULES,
            R.KUBE_PROXY_UNHEALTHY,
            R.KUBE_PROXY_SYNC_STALE,
        ),
        Needs.NODE_DUMP,
        kube_proxy.evaluate,
        frozenset({"node"}),
        unknown_reasons=(
            R.KUBE_PROXY_RULES_UNREADABLE,
            R.KUBE_PROXY_NOT_FOUND,
            R.KUBE_PROXY_MODE_UNSUPPORTED,
            R.KUBE_PROXY_RULES_FROM_ANOTHER_NODE,
            R.NOT_PROBED_YET,
        ),
    ),
    CheckSpec(
        Check.SECURITY_GROUPS,
        "Node-group security groups",
        "node-group security groups",
        "the security groups of each target's interface (the pod's ENI, or the instance's) against the load "
        "balancer's security groups or subnets, the cluster tag, and node groups against each other",
        CLUSTER,
        (
            R.HEALTH_CHECK_PORT_NOT_ALLOWED,
            R.TRAFFIC_PORT_NOT_ALLOWED,
            R.MULTIPLE_CLUSTER_TAGGED_SECURITY_GROUPS,
            R.NO_CLUSTER_TAGGED_SECURITY_GROUP,
            R.NODE_GROUP_TRAFFIC_BLOCKED,
            R.PREFIX_LIST_NOT_VERIFIED,
            R.TARGET_OUTSIDE_VPC,
            R.TARGET_INTERFACE_NOT_FOUND,
        ),
        (R.HEALTH_CHECK_PORT_NOT_ALLOWED, R.NODE_GROUP_TRAFFIC_BLOCKED, R.MULTIPLE_CLUSTER_TAGGED_SECURITY_GROUPS),
        Needs.AWS,
        security_groups.evaluate,
        frozenset({"aws"}),
    ),
    CheckSpec(
        Check.NETWORK,
        "Network ACLs and route tables",
        "network ACLs and route tables",
        "the network ACLs (both ways, stateless) and route tables between each load-balancer subnet and each "
        "target's subnet",
        CLUSTER,
        (
            R.NACL_DENIES_HEALTH_CHECK,
            R.NACL_DENIES_TRAFFIC,
            R.NACL_DENIES_RETURN_TRAFFIC,
            R.MISSING_LOCAL_ROUTE,
            R.BLACKHOLE_ROUTE,
            R.ROUTE_NOT_LOCAL,
            R.TARGET_OUTSIDE_VPC,
            R.TARGET_INTERFACE_NOT_FOUND,
        ),
        (R.NACL_DENIES_HEALTH_CHECK, R.NACL_DENIES_RETURN_TRAFFIC, R.MISSING_LOCAL_ROUTE, R.BLACKHOLE_ROUTE),
        Needs.AWS,
        network.evaluate,
        frozenset({"aws"}),
    ),
    CheckSpec(
        Check.ELB_TARGET_HEALTH,
        "Target health reported by the load balancer",
        "what the load balancer says",
        "ELBv2 DescribeTargetHealth per target, mapped to its pod or node and correlated with the node agents' "
        "probes; the target groups' real health checks against the annotations",
        CLUSTER,
        (
            R.ELB_REGISTRATION_IN_PROGRESS,
            R.ELB_INITIAL_HEALTH_CHECKING,
            R.TARGET_RESPONSE_CODE_MISMATCH,
            R.TARGET_TIMEOUT,
            R.TARGET_FAILED_HEALTH_CHECKS,
            R.ELB_INTERNAL_ERROR,
            R.TARGET_NOT_REGISTERED,
            R.TARGET_NOT_IN_USE,
            R.TARGET_INVALID_STATE,
            R.TARGET_IP_UNUSABLE,
            R.TARGET_DEREGISTRATION_IN_PROGRESS,
            R.TARGET_HEALTH_CHECK_DISABLED,
            R.ELB_UNKNOWN_REASON,
            R.PROBE_FAILING_ELB_HEALTHY,
            R.HEALTH_CHECK_DRIFT,
            R.TARGET_GROUP_NOT_FOUND,
            R.NO_REGISTERED_TARGETS,
            R.UNSUPPORTED_TARGET_TYPE,
            R.TARGET_NOT_IN_CLUSTER,
            R.NOT_PROBED_YET,
        ),
        (R.TARGET_TIMEOUT, R.TARGET_RESPONSE_CODE_MISMATCH, R.PROBE_FAILING_ELB_HEALTHY, R.HEALTH_CHECK_DRIFT),
        Needs.AWS,
        elb_target_health.evaluate,
        frozenset({"aws"}),
    ),
    CheckSpec(
        Check.ROLLOUT,
        "Deregistration delay vs pod termination (rollouts)",
        "the 5xx window during rollouts and node churn",
        "each ip target group's deregistration delay (`deregistration_delay.timeout_seconds`, 300 s by default) "
        "against its pods' `terminationGracePeriodSeconds` and preStop hooks; with AWS, targets still registered "
        "(draining) whose pod or node is gone or past its grace period",
        CLUSTER,
        (
            R.NO_PRE_STOP_HOOK,
            R.GRACE_PERIOD_SHORTER_THAN_DEREGISTRATION_DELAY,
            R.PRE_STOP_LONGER_THAN_GRACE_PERIOD,
            R.TERMINATED_WHILE_REGISTERED,
        ),
        (R.NO_PRE_STOP_HOOK, R.GRACE_PERIOD_SHORTER_THAN_DEREGISTRATION_DELAY, R.TERMINATED_WHILE_REGISTERED),
        Needs.NOTHING,
        rollout.evaluate,
        frozenset({"services", "aws"}),
    ),
)

SPECS: dict[Check, CheckSpec] = {spec.check: spec for spec in REGISTRY}
_POSITION = {spec.check: index for index, spec in enumerate(REGISTRY)}


def spec(check: Check) -> CheckSpec:
    return SPECS[check]


def position(check: Check) -> int:
    """The check's place in the runbook (reports list steps in this order)."""
    return _POSITION[check]


def title(check: Check | str) -> str:
    return SPECS[Check(check)].title


def runs_in(check: Check, role: Role) -> bool:
    return role in SPECS[check].roles


def evaluate(scope: Scope, role: Role) -> list[CheckResult]:
    """Every check the role runs, over what the scope holds; unlinked and unordered (``causes`` does that)."""
    return [result for entry in checks_for(scope, role) for result in entry.evaluate(scope)]


def checks_for(scope: Scope, role: Role) -> tuple[CheckSpec, ...]:
    """The checks the role runs that read a part the scope has: the cluster role evaluates thousands of
    small scopes (one Service, one owner) per round."""
    present = frozenset(
        part
        for part, here in (
            ("services", scope.services),
            ("plans", scope.plans),
            ("controller", scope.controller),
            ("node", scope.node),
            ("aws", scope.aws),
        )
        if here
    )
    return _runs(role, present)


@functools.cache
def _runs(role: Role, present: frozenset[str]) -> tuple[CheckSpec, ...]:
    return tuple(entry for entry in REGISTRY if role in entry.roles and entry.judges & present)
