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
