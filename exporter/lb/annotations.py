"""Annotation names the AWS Load Balancer Controller reads, and the ranges AWS accepts for them."""

from __future__ import annotations

import re

ALB_PREFIX = "alb.ingress.kubernetes.io/"
NLB_PREFIX = "service.beta.kubernetes.io/aws-load-balancer-"

# ALB (Ingress, or the backend Service: the Service's value wins)
ALB_TARGET_TYPE = ALB_PREFIX + "target-type"
ALB_BACKEND_PROTOCOL = ALB_PREFIX + "backend-protocol"
ALB_BACKEND_PROTOCOL_VERSION = ALB_PREFIX + "backend-protocol-version"
ALB_HC_PORT = ALB_PREFIX + "healthcheck-port"
ALB_HC_PROTOCOL = ALB_PREFIX + "healthcheck-protocol"
ALB_HC_PATH = ALB_PREFIX + "healthcheck-path"
ALB_HC_INTERVAL = ALB_PREFIX + "healthcheck-interval-seconds"
ALB_HC_TIMEOUT = ALB_PREFIX + "healthcheck-timeout-seconds"
ALB_HEALTHY_THRESHOLD = ALB_PREFIX + "healthy-threshold-count"
ALB_UNHEALTHY_THRESHOLD = ALB_PREFIX + "unhealthy-threshold-count"
ALB_SUCCESS_CODES = ALB_PREFIX + "success-codes"
ALB_TARGET_GROUP_ATTRIBUTES = ALB_PREFIX + "target-group-attributes"
ALB_IP_ADDRESS_TYPE = ALB_PREFIX + "ip-address-type"  # Ingress only: ipv4 | dualstack | dualstack-without-public-ipv4
ALB_GROUP_NAME = ALB_PREFIX + "group.name"
LEGACY_INGRESS_CLASS = "kubernetes.io/ingress.class"

# NLB (Service)
NLB_TYPE = NLB_PREFIX + "type"
NLB_TARGET_TYPE = NLB_PREFIX + "nlb-target-type"
NLB_HC_PROTOCOL = NLB_PREFIX + "healthcheck-protocol"
NLB_HC_PORT = NLB_PREFIX + "healthcheck-port"
NLB_HC_PATH = NLB_PREFIX + "healthcheck-path"
NLB_HC_INTERVAL = NLB_PREFIX + "healthcheck-interval"
NLB_HC_TIMEOUT = NLB_PREFIX + "healthcheck-timeout"
NLB_HEALTHY_THRESHOLD = NLB_PREFIX + "healthcheck-healthy-threshold"
NLB_UNHEALTHY_THRESHOLD = NLB_PREFIX + "healthcheck-unhealthy-threshold"
NLB_SUCCESS_CODES = NLB_PREFIX + "healthcheck-success-codes"
NLB_TARGET_GROUP_ATTRIBUTES = NLB_PREFIX + "target-group-attributes"
NLB_IP_ADDRESS_TYPE = NLB_PREFIX + "ip-address-type"  # ipv4 | dualstack

# Target-group attributes lbdoctor reads (the rest are passed through untouched).
DEREGISTRATION_DELAY = "deregistration_delay.timeout_seconds"
DEREGISTRATION_DELAY_DEFAULT = 300  # seconds, AWS's default
DEREGISTRATION_DELAY_RANGE = (0, 3600)

# EKS Auto Mode: the controller names, its default target type, and the annotations it does not support
# (Amazon EKS user guide, "Create an IngressClass to configure an Application Load Balancer" and "Use Service
# Annotations to configure Network Load Balancers").
AUTO_MODE_ALB_CONTROLLER = "eks.amazonaws.com/alb"
AUTO_MODE_NLB_CLASS = "eks.amazonaws.com/nlb"
AUTO_MODE_TARGET_TYPE = "ip"
AUTO_MODE_UNSUPPORTED = {
    LEGACY_INGRESS_CLASS: "use spec.ingressClassName",
    ALB_GROUP_NAME: "set group.name in the IngressClassParams",
    ALB_PREFIX + "waf-acl-id": "use WAF v2 (wafv2-acl-arn)",
    ALB_PREFIX + "web-acl-id": "use WAF v2 (wafv2-acl-arn)",
    ALB_PREFIX + "shield-advanced-protection": "Shield Advanced is not integrated with EKS Auto Mode",
    NLB_TYPE: "use spec.loadBalancerClass",
    NLB_PREFIX + "internal": f"use {NLB_PREFIX}scheme",
    "service.beta.kubernetes.io/load-balancer-source-ranges": "use spec.loadBalancerSourceRanges",
    NLB_PREFIX + "proxy-protocol": f"use {NLB_PREFIX}attributes",
    NLB_PREFIX + "access-log-enabled": f"use {NLB_PREFIX}attributes",
    NLB_PREFIX + "access-log-s3-bucket-name": f"use {NLB_PREFIX}attributes",
    NLB_PREFIX + "access-log-s3-bucket-prefix": f"use {NLB_PREFIX}attributes",
    NLB_PREFIX + "cross-zone-load-balancing-enabled": f"use {NLB_PREFIX}attributes",
}

# Ranges from the ELBv2 API (DescribeTargetGroups field documentation).
INTERVAL_RANGE = (5, 300)
TIMEOUT_RANGE = (2, 120)
THRESHOLD_RANGE = (2, 10)
ALB_CODES_RANGE = (200, 499)
NLB_CODES_RANGE = (200, 599)
GRPC_CODES_RANGE = (0, 99)

TRAFFIC_PORT = "traffic-port"

# AWS's rule for HealthCheckPath (ELBv2 CreateTargetGroup / ModifyTargetGroup): 1 to 1024 characters
# (the API model's Path shape), beginning with "/" and made of A-Z a-z 0-9 and - @ : % _ + . ~ # ? & / =
# (what the API answers otherwise: "Health check must begin with a '/' and can only consist of the
# characters: a-z, A-Z, 0-9, and @:%_+.~#?&/="). Anything else is percent-encoded by whoever writes it.
HEALTH_CHECK_PATH_MAX = 1024
HEALTH_CHECK_PATH_CHARACTERS = "A-Z a-z 0-9 - @ : % _ + . ~ # ? & / ="
_HEALTH_CHECK_PATH = re.compile(r"/[-A-Za-z0-9@:%_+.~#?&/=]*")

# Most target groups lbdoctor derives from one object (an ALB takes 100 target groups and an NLB 50
# listeners by default quota); the rest are reported, not probed, so one object's series stay bounded.
MAX_TARGET_GROUPS_PER_OWNER = 100

QUOTE_LIMIT = 64


def health_check_path_problem(path: str) -> str | None:
    """Why AWS would reject ``path`` as a target group's HealthCheckPath, or None when it accepts it."""
    if len(path) > HEALTH_CHECK_PATH_MAX:
        return f"is {len(path)} characters long; AWS accepts at most {HEALTH_CHECK_PATH_MAX}"
    if not path.startswith("/"):
        return "is not a path starting with /"
    if _HEALTH_CHECK_PATH.fullmatch(path) is None:
        return f"has characters AWS does not accept in a health-check path (only {HEALTH_CHECK_PATH_CHARACTERS})"
    return None


def quoted(value: str, limit: int = QUOTE_LIMIT) -> str:
    """A value someone else wrote, for a message: quoted, and cut to ``limit`` characters with its length."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


# Spellings people reach for that the controller silently ignores (docs/health-check-defaults.md §4).
MISSPELLINGS = {
    ALB_PREFIX + "health-check-path": ALB_HC_PATH,
    ALB_PREFIX + "healthcheck-interval": ALB_HC_INTERVAL,
    ALB_PREFIX + "healthcheck-timeout": ALB_HC_TIMEOUT,
    ALB_PREFIX + "healthcheck-success-codes": ALB_SUCCESS_CODES,
    NLB_PREFIX + "health-check-path": NLB_HC_PATH,
    NLB_PREFIX + "healthcheck-interval-seconds": NLB_HC_INTERVAL,
    NLB_PREFIX + "healthcheck-timeout-seconds": NLB_HC_TIMEOUT,
    NLB_PREFIX + "success-codes": NLB_SUCCESS_CODES,
}
