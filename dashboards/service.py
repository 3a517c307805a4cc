"""lbdoctor / Service: one load-balanced service — its targets, probe latency, predicted vs ELB state, reasons."""

from __future__ import annotations

from dashboards.common import (
    ELB_STATE,
    HEALTHY,
    PROBE,
    cluster_variable,
    matcher,
    namespace_variable,
    runbook,
    runbooks_link,
    sel,
)
from dashboards.grafana import (
    Dashboard,
    Link,
    Query,
    datasource_variable,
    query_variable,
    stat,
    state_timeline,
    status_history,
    table,
    timeseries,
)

UID = "lbdoctor-service"

SERVICE = 'service=~"$service"'
TARGET = "pod, node, lb, port, path, owner"


def probe(metric: str, *matchers: str) -> str:
    return sel(metric, SERVICE, *matchers)


def elb_state() -> str:
    """The load balancer's state per target as one number: healthy 1, unhealthy 0, anything else 2."""

    def state(op: str, value: str) -> str:
        return sel("lbdoctor_elb_target_state", SERVICE, matcher("state", op, value))

    return (
        f"max by (target, port) ({state('=', 'healthy')} == 1)\n"
        f"  or\nmax by (target, port) ({state('=', 'unhealthy')} == 1) * 0\n"
        f"  or\nmax by (target, port) ({state('!~', 'healthy|unhealthy')} == 1) * 2"
    )


def build() -> Dashboard:
    stats = [
        stat(
            "Targets",
            "Targets of this service that lbdoctor probes.",
            f"count({probe('lbdoctor_probe_success')})",
            bad_from=None,
        ),
        stat(
            "Failing their health check",
            "Targets whose last health check failed.",
            f"count({probe('lbdoctor_probe_success')} == 0)",
        ),
        stat(
            "Marked unhealthy (predicted)",
            "Targets the load balancer has marked unhealthy by its thresholds, as lbdoctor predicts.",
            f"count({probe('lbdoctor_probe_predicted_healthy')} == 0)",
        ),
        stat(
            "Marked unhealthy (AWS)",
            "Targets the load balancer itself reports unhealthy (DescribeTargetHealth, cluster role).",
            f"count({probe('lbdoctor_elb_target_state', matcher('state', '=', 'unhealthy'))} == 1)",
        ),
        stat(
            "Slowest health check",
            "Duration of the slowest last health check among the targets.",
            f"max({probe('lbdoctor_probe_duration_seconds')})",
            unit="s",
            bad_from=None,
        ),
        stat(
            "Health-check interval",
            "The target group's health-check interval, as lbdoctor follows it.",
            f"max({probe('lbdoctor_probe_interval_seconds')})",
            unit="s",
            bad_from=None,
        ),
    ]
    targets = table(
        "Targets",
        "Every target of the service: the last probe, the load balancer's state by its thresholds, the answer.",
        [
            Query(f"max by ({TARGET}) ({probe('lbdoctor_probe_success')})"),
            Query(f"max by ({TARGET}) ({probe('lbdoctor_probe_predicted_healthy')})"),
            Query(f"max by ({TARGET}) ({probe('lbdoctor_probe_http_status_code')})"),
            Query(f"max by ({TARGET}) ({probe('lbdoctor_probe_duration_seconds')})"),
        ],
        columns={
            "pod": "Pod",
            "owner": "Target group of",
            "node": "Node",
            "lb": "LB",
            "port": "Port",
            "path": "Path",
            "Value #A": "Last probe",
            "Value #B": "LB state (predicted)",
            "Value #C": "HTTP status",
            "Value #D": "Duration",
        },
        overrides=[
            {"matcher": {"id": "byName", "options": "Last probe"}, "properties": [{"id": "mappings", "value": PROBE}]},
            {
                "matcher": {"id": "byName", "options": "LB state (predicted)"},
                "properties": [{"id": "mappings", "value": HEALTHY}],
            },
            {"matcher": {"id": "byName", "options": "Duration"}, "properties": [{"id": "unit", "value": "s"}]},
        ],
    )
    reasons = [
        table(
            "Why targets fail",
            "The reason of each failing target's last health check.",
            [Query(f"max by (pod, owner, port, path, reason) ({probe('lbdoctor_probe_failure_reason')})")],
            columns={"pod": "Pod", "owner": "Target group of", "port": "Port", "path": "Path", "reason": "Reason"},
            width=12,
        ),
        table(
            "Runbook findings",
            "Failing or warning runbook steps for the service, its Ingress of the same name, and its pods.",
            [
                Query(
                    "max by (check, kind, name, reason) ("
                    f"{sel('lbdoctor_check_failure_reason', matcher('name', '=~', '$service'))})"
                ),
                Query(
                    "max by (check, kind, name, reason) (\n"
                    f"  {sel('lbdoctor_check_failure_reason', matcher('kind', '=', 'Pod'))}\n"
                    "  and on (namespace, name)\n"
                    "  label_replace(max by (namespace, pod) "
                    f'({probe("lbdoctor_probe_success")}), "name", "$1", "pod", "(.+)")\n)'
                ),
            ],
            columns={"check": "Runbook step", "kind": "Kind", "name": "Name", "reason": "Reason"},
            width=12,
        ),
    ]
    reasons[1].links = [Link("Runbook steps", runbook("README.md"))]
    predicted = state_timeline(
        "Load balancer's state, predicted by lbdoctor",
        "The state the load balancer reaches by its own thresholds from lbdoctor's probes.",
        [Query(f"max by (pod, port) ({probe('lbdoctor_probe_predicted_healthy')})", "{{pod}}:{{port}}")],
        HEALTHY,
        width=12,
    )
    reported = state_timeline(
        "Load balancer's state, reported by AWS",
        "What the load balancer itself reports per target (cluster role, DescribeTargetHealth). A "
        "difference with the prediction points at the network path between the load balancer and the target.",
        [Query(elb_state(), "{{target}}:{{port}}")],
        ELB_STATE,
        width=12,
    )
    reported.links = [Link("Runbook: ELB target unhealthy", runbook("LbDoctorElbTargetUnhealthy.md"))]
    latency = [
        timeseries(
            "Health-check duration",
            "Duration of each target's last health check; a check close to its timeout fails when the app "
            "slows down a little.",
            [Query(f"max by (pod, port) ({probe('lbdoctor_probe_duration_seconds')})", "{{pod}}:{{port}}")],
            unit="s",
        ),
        timeseries(
            "Health-check phases",
            "Where the time goes: connect, tls, processing (time to first byte), transfer.",
            [Query(f"max by (pod, phase) ({probe('lbdoctor_probe_phase_duration_seconds')})", "{{pod}} {{phase}}")],
            unit="s",
            stack=True,
        ),
    ]
    results = [
        status_history(
            "Health-check results",
            "Each target's last health-check result over time.",
            [Query(f"max by (pod, port) ({probe('lbdoctor_probe_success')})", "{{pod}}:{{port}}")],
            PROBE,
            width=12,
        ),
        timeseries(
            "HTTP status codes",
            "Status code of each target's last answer (0: TCP check, or no answer).",
            [Query(f"max by (pod, port, path) ({probe('lbdoctor_probe_http_status_code')})", "{{pod}} {{path}}")],
        ),
    ]
    results[0].links = [Link("Runbook: health check failing", runbook("LbDoctorHealthCheckFailing.md"))]
    service = query_variable(
        "service",
        "Service",
        'label_values(lbdoctor_probe_success{cluster=~"$cluster", namespace=~"$namespace"}, service)',
        include_all=False,
        multi=False,
    )
    return Dashboard(
        UID,
        "lbdoctor / Service",
        "One load-balanced service: its targets, their health checks, the load balancer's state and the reasons.",
        [datasource_variable(), cluster_variable(), namespace_variable(multi=False), service],
        [stats, [targets], reasons, [predicted, reported], latency, results],
        links=[runbooks_link()],
    )
