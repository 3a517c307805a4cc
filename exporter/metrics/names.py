"""Every metric lbdoctor exposes: name, type, help and labels. docs/metrics.md documents each one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricName:
    name: str
    type: str  # gauge | counter | histogram | info
    help: str
    labels: tuple[str, ...] = ()


CHECK_LABELS = ("check", "namespace", "kind", "name")
PROBE_LABELS = ("namespace", "service", "pod", "node", "lb", "port", "path", "owner")

CHECK_STATUS = MetricName(
    "lbdoctor_check_status",
    "gauge",
    "Status of a runbook check for a load balancer (the Ingress, NLB Service or TargetGroupBinding owning its "
    "target groups: the worst over its Services, pods and targets) or an object outside any (the controller, a "
    "node's kube-proxy): one series, 1, labelled with the current status.",
    (*CHECK_LABELS, "status"),
)
CHECK_FAILURE_REASON = MetricName(
    "lbdoctor_check_failure_reason",
    "gauge",
    "1 while a runbook check does not pass for an object, with this reason; absent once it passes.",
    (*CHECK_LABELS, "reason"),
)
CHECK_ROOT_CAUSE = MetricName(
    "lbdoctor_check_root_cause",
    "gauge",
    "1 while a runbook check fails or warns for an object with this reason and nothing else this lbdoctor "
    "found explains it (a root cause); absent otherwise.",
    (*CHECK_LABELS, "reason"),
)
CHECK_OBJECTS_OMITTED = MetricName(
    "lbdoctor_check_objects_omitted",
    "gauge",
    "Objects that do not pass the check whose own series (failure reason, root cause, caused by) this scrape "
    "leaves out, past metrics_max_object_series; the status page and /api/v1/results list every one.",
    ("check",),
)
CAUSE_LABELS = ("cause_check", "cause_namespace", "cause_kind", "cause_name", "cause_reason")
CHECK_CAUSED_BY = MetricName(
    "lbdoctor_check_caused_by",
    "gauge",
    "1 while a failing or warning result (check, object, reason) follows from another finding (the cause_* "
    "labels), by lbdoctor's causal rules.",
    (*CHECK_LABELS, "reason", *CAUSE_LABELS),
)
PROBE_SUCCESS = MetricName(
    "lbdoctor_probe_success",
    "gauge",
    "Whether the last health-check probe of the target, sent as the load balancer sends it, succeeded.",
    PROBE_LABELS,
)
PROBE_DURATION = MetricName(
    "lbdoctor_probe_duration_seconds", "gauge", "Duration of the last health-check probe.", PROBE_LABELS
)
PROBE_PHASE_DURATION = MetricName(
    "lbdoctor_probe_phase_duration_seconds",
    "gauge",
    "Duration of each phase (connect, tls, processing, transfer) of the last probe.",
    (*PROBE_LABELS, "phase"),
)
PROBE_HTTP_STATUS = MetricName(
    "lbdoctor_probe_http_status_code",
    "gauge",
    "HTTP status code of the last probe's response; 0 when there was none (TCP, or no response).",
    PROBE_LABELS,
)
PROBE_GRPC_STATUS = MetricName(
    "lbdoctor_probe_grpc_status_code",
    "gauge",
    "grpc-status of the last gRPC health check's answer (target groups of protocol version GRPC); absent for "
    "other health checks and while no status was received.",
    PROBE_LABELS,
)
PROBE_FAILURE_REASON = MetricName(
    "lbdoctor_probe_failure_reason",
    "gauge",
    "1 while the last probe failed with this reason; absent while it succeeds.",
    (*PROBE_LABELS, "reason"),
)
PROBE_PREDICTED_HEALTHY = MetricName(
    "lbdoctor_probe_predicted_healthy",
    "gauge",
    "The state the load balancer reaches by its own thresholds given the probe history: 1 healthy, "
    "0 unhealthy; absent until the first verdict.",
    PROBE_LABELS,
)
PROBE_TRANSITIONS = MetricName(
    "lbdoctor_probe_transitions_total",
    "counter",
    "Predicted healthy/unhealthy transitions of the target since lbdoctor started probing it (flapping).",
    PROBE_LABELS,
)
PROBE_LAST_TIMESTAMP = MetricName(
    "lbdoctor_probe_last_timestamp_seconds",
    "gauge",
    "Unix time the last probe of the target started. lbdoctor probes on its own schedule, not on scrape.",
    PROBE_LABELS,
)
PROBE_INTERVAL = MetricName(
    "lbdoctor_probe_interval_seconds",
    "gauge",
    "Interval between probes of the target: the target group's health-check interval.",
    PROBE_LABELS,
)

KUBE_PROXY_LABELS = ("node", "namespace", "service")
KUBE_PROXY_RULES_MISSING = MetricName(
    "lbdoctor_kube_proxy_rules_missing",
    "gauge",
    "Rules this node's kube-proxy should have for the Service but does not (ClusterIP dispatch, endpoints, "
    "NodePort, health check node port), once past the grace period.",
    KUBE_PROXY_LABELS,
)
KUBE_PROXY_RULES_STALE = MetricName(
    "lbdoctor_kube_proxy_rules_stale",
    "gauge",
    "Rules this node's kube-proxy still has for the Service but should not (endpoints no EndpointSlice lists, "
    "'has no endpoints' rejects while endpoints exist), once past the grace period.",
    KUBE_PROXY_LABELS,
)
KUBE_PROXY_SYNC_LAG = MetricName(
    "lbdoctor_kube_proxy_sync_lag_seconds",
    "gauge",
    "kube-proxy's last queued change minus its last successful sync (kubeproxy_sync_proxy_rules_last_queued_"
    "timestamp_seconds - kubeproxy_sync_proxy_rules_last_timestamp_seconds, worst IP family); 0 when caught up.",
    ("node",),
)
KUBE_PROXY_HEALTHY = MetricName(
    "lbdoctor_kube_proxy_healthy",
    "gauge",
    "1 while kube-proxy's /healthz answers 200; 0 when it answers otherwise, or not at all although its rules "
    "are on the node.",
    ("node",),
)

FAMILIES = (
    CHECK_STATUS,
    CHECK_FAILURE_REASON,
    CHECK_ROOT_CAUSE,
    CHECK_CAUSED_BY,
    CHECK_OBJECTS_OMITTED,
    PROBE_SUCCESS,
    PROBE_DURATION,
    PROBE_PHASE_DURATION,
    PROBE_HTTP_STATUS,
    PROBE_FAILURE_REASON,
    PROBE_PREDICTED_HEALTHY,
    PROBE_TRANSITIONS,
    PROBE_LAST_TIMESTAMP,
    PROBE_INTERVAL,
    KUBE_PROXY_RULES_MISSING,
    KUBE_PROXY_RULES_STALE,
    KUBE_PROXY_SYNC_LAG,
    KUBE_PROXY_HEALTHY,
)

# ---- readiness gates and TargetGroupBindings (cluster role): exporter.metrics.bindings ---------------
GATE_LABELS = ("namespace", "pod", "targetgroupbinding")
READINESS_GATE_READY = MetricName(
    "lbdoctor_readiness_gate_ready",
    "gauge",
    "1 when the pod's target-health.elbv2.k8s.aws/<targetgroupbinding> readiness gate is True (the load balancer "
    "counts the target healthy), 0 while the pod waits on it.",
    GATE_LABELS,
)
READINESS_GATE_WAITING = MetricName(
    "lbdoctor_readiness_gate_waiting_seconds",
    "gauge",
    "How long the pod has waited on the load balancer's readiness gate (since the condition last changed, or "
    "the pod was created); 0 once it is True.",
    GATE_LABELS,
)
BINDING_LABELS = ("namespace", "targetgroupbinding")
BINDING_TARGET_GROUP_EXISTS = MetricName(
    "lbdoctor_targetgroupbinding_target_group_exists",
    "gauge",
    "1 when AWS knows the TargetGroupBinding's target group, 0 when AWS says it does not exist; absent when "
    "lbdoctor cannot ask AWS.",
    (*BINDING_LABELS, "target_group"),
)
BINDING_RECONCILE_ERROR = MetricName(
    "lbdoctor_targetgroupbinding_last_reconcile_error_timestamp_seconds",
    "gauge",
    "Unix time of the last reconcile failure the AWS Load Balancer Controller reported on the binding (a "
    "Warning Event), with its reason; absent while there is none.",
    (*BINDING_LABELS, "reason"),
)
BINDING_FAMILIES = (READINESS_GATE_READY, READINESS_GATE_WAITING, BINDING_TARGET_GROUP_EXISTS, BINDING_RECONCILE_ERROR)

# ---- AWS (cluster role): rendered by exporter.aws.metrics.render_aws ------------------------------
NODE_AGENT_UP = MetricName(
    "lbdoctor_node_agent_up",
    "gauge",
    "Cluster role: 1 while the last read of the node's agent succeeded, 0 while it fails (its last answer is "
    "then shown as stale, then dropped) or its pod went away.",
    ("node",),
)
NODE_AGENT_LAST_READ = MetricName(
    "lbdoctor_node_agent_last_read_timestamp_seconds",
    "gauge",
    "Cluster role: when the node's agent last answered (200 or 304 Not Modified), as a Unix time; absent once "
    "its last answer is dropped.",
    ("node",),
)
NODE_AGENT_TARGETS = MetricName(
    "lbdoctor_node_agent_targets",
    "gauge",
    "Cluster role: the targets the node's agent probes, by the state the load balancer is predicted to see "
    "(healthy, unhealthy, initial), while its answer is shown.",
    ("node", "state"),
)
NODE_AGENT_FAMILIES = (NODE_AGENT_UP, NODE_AGENT_LAST_READ, NODE_AGENT_TARGETS)

ELB_TARGET_LABELS = ("target_group", "namespace", "service", "target", "port")

ELB_TARGET_STATE = MetricName(
    "lbdoctor_elb_target_state",
    "gauge",
    "The load balancer's own state of a target (DescribeTargetHealth): 1 for the current state, 0 for the others.",
    (*ELB_TARGET_LABELS, "state"),
)
ELB_TARGET_TRANSITIONS = MetricName(
    "lbdoctor_elb_target_transitions_total",
    "counter",
    "healthy/unhealthy changes of the load balancer's state of a target seen since lbdoctor started watching it.",
    ELB_TARGET_LABELS,
)
AWS_API_REQUESTS = MetricName(
    "lbdoctor_aws_api_requests_total",
    "counter",
    "AWS API requests lbdoctor made, by operation and outcome (success, throttled, access_denied, "
    "no_credentials, not_found, unreachable, error; retried counts botocore's retries).",
    ("operation", "outcome"),
)

AWS_API_BUDGET = MetricName(
    "lbdoctor_aws_api_budget_requests_per_second",
    "gauge",
    "lbdoctor's client-side budget for AWS calls per service (elbv2, ec2, cloudwatch): calls a second on average.",
    ("service",),
)
AWS_API_BUDGET_BURST = MetricName(
    "lbdoctor_aws_api_budget_burst",
    "gauge",
    "Most calls lbdoctor makes back to back to the service before its budget's rate applies.",
    ("service",),
)
AWS_API_BUDGET_WAIT = MetricName(
    "lbdoctor_aws_api_budget_wait_seconds_total",
    "counter",
    "Seconds AWS calls waited for lbdoctor's own budget; rising steadily: the budget, not the cadence, sets "
    "how fresh target health is.",
    ("service",),
)
AWS_TARGET_HEALTH_READS = MetricName(
    "lbdoctor_aws_target_health_reads_total",
    "counter",
    "DescribeTargetHealth calls by what made lbdoctor read the target group: first, cloudwatch, binding, probe, "
    "readiness_gate, not_healthy, sweep, full.",
    ("trigger",),
)
AWS_TARGET_HEALTH_AGE = MetricName(
    "lbdoctor_aws_target_health_oldest_age_seconds",
    "gauge",
    "Age of the stalest target-health verdict lbdoctor holds: how long ago its least recently read target group "
    "was read.",
)
AWS_CLOUDWATCH_WATCHED = MetricName(
    "lbdoctor_aws_cloudwatch_watched_target_groups",
    "gauge",
    "Target groups whose UnHealthyHostCount lbdoctor watched in CloudWatch in its last pass (0: detector idle).",
)

AWS_FAMILIES = (
    ELB_TARGET_STATE,
    ELB_TARGET_TRANSITIONS,
    AWS_API_REQUESTS,
    AWS_API_BUDGET,
    AWS_API_BUDGET_BURST,
    AWS_API_BUDGET_WAIT,
    AWS_TARGET_HEALTH_READS,
    AWS_TARGET_HEALTH_AGE,
    AWS_CLOUDWATCH_WATCHED,
)
