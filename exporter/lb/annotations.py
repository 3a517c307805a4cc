"""Annotation names the AWS Load Balancer Controller reads, and the ranges AWS accepts for them."""

from __future__ import annotations

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

# Spellings people reach for that the controller silently ignores (pain point 7 of the reference).
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
