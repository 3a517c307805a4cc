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
