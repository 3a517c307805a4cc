"""lbdoctor / Overview: which runbook steps fail where, now and over time."""

from __future__ import annotations

from dashboards.common import (
    HEALTHY,
    STATUS,
    cluster_variable,
    namespace_variable,
    runbook,
    runbooks_link,
    sel,
    worst_status,
)
from dashboards.grafana import (
    Dashboard,
    Link,
    Query,
    datasource_variable,
    link_override,
    stat,
    state_timeline,
    table,
    timeseries,
)

UID = "lbdoctor-overview"

# One object is reported by every node agent that has one of its pods: count objects, not series.
FAILING_OBJECTS = "max by (cluster, check, namespace, kind, name) ({} == 1)"


def build() -> Dashboard:
    failing = FAILING_OBJECTS.format(sel("lbdoctor_check_status", 'status="fail"'))
    warning = FAILING_OBJECTS.format(sel("lbdoctor_check_status", 'status="warn"'))
    stats = [
        stat(
            "Objects failing a runbook step",
            "Services, Ingresses, pods and other objects for which at least one runbook step fails now.",
            f"count({failing})",
        ),
        stat(
            "Objects with warnings",
            "Objects for which a runbook step warns (for example a health-check path ignored by a TCP check).",
            f"count({warning})",
        ),
        stat(
            "Targets failing their health check",
            "Load-balancer targets whose last health check, sent as the load balancer sends it, failed.",
            f"count({sel('lbdoctor_probe_success')} == 0)",
        ),
        stat(
            "Targets the LB marks unhealthy",
            "Targets the load balancer has marked unhealthy by its own thresholds (lbdoctor's prediction).",
            f"count({sel('lbdoctor_probe_predicted_healthy')} == 0)",
        ),
        stat(
            "Flapping targets",
            "Targets that changed between healthy and unhealthy four times or more in 15 minutes "
            "(the LbDoctorTargetFlapping alert's condition).",
            f"count(sum by (cluster, namespace, service, pod, port) "
            f"(increase({sel('lbdoctor_probe_transitions_total')}[15m])) >= 4)",
        ),
        stat(
            "Targets probed",
            "Load-balancer targets lbdoctor's node agents probe.",
            f"count({sel('lbdoctor_probe_success')})",
            bad_from=None,
        ),
    ]
    now = table(
        "Failing runbook steps now",
        "Every object with a failing or warning runbook step and the reason. Click a step for its runbook, "
        "a name for the service drill-down.",
        [Query(f"max by (check, namespace, kind, name, reason) ({sel('lbdoctor_check_failure_reason')})")],
        columns={"check": "Runbook step", "namespace": "Namespace", "kind": "Kind", "name": "Name", "reason": "Reason"},
        height=9,
        overrides=[
            link_override("Runbook step", "Runbook for ${__value.raw}", runbook("README.md", "${__value.raw}")),
            link_override(
                "Name",
                "Service drill-down",
                "/d/lbdoctor-service/lbdoctor-service?${datasource:queryparam}&${cluster:queryparam}"
                "&var-namespace=${__data.fields.Namespace}&var-service=${__value.raw}&${__url_time_range}",
            ),
        ],
    )
    causes = "check, namespace, kind, name, reason"
    roots = table(
        "Root causes now",
        "What to fix first: failing or warning steps nothing else explains, by lbdoctor's causal rules "
        "(docs/diagnose.md). A node agent's finding that the cluster role explains (a probe failing behind a "
        "security group) is left out. Each other failing step follows from one of these.",
        [
            Query(
                f"max by ({causes}) ({sel('lbdoctor_check_root_cause')})\n"
                f"unless on ({causes}) max by ({causes}) ({sel('lbdoctor_check_caused_by')})"
            )
        ],
        columns={"check": "Runbook step", "namespace": "Namespace", "kind": "Kind", "name": "Name", "reason": "Reason"},
        width=12,
        height=9,
        overrides=[
            link_override("Runbook step", "Runbook for ${__value.raw}", runbook("README.md", "${__value.raw}")),
        ],
    )
    consequences = table(
        "What follows from them",
        "Failing steps explained by another finding, and which: the cause's step, object and reason.",
        [
            Query(
                f"max by ({causes}, cause_check, cause_kind, cause_name, cause_reason) "
                f"({sel('lbdoctor_check_caused_by')})"
            )
        ],
        columns={
            "check": "Step",
            "kind": "Kind",
            "name": "Name",
            "reason": "Reason",
            "cause_check": "Caused by step",
            "cause_kind": "Cause kind",
            "cause_name": "Cause name",
            "cause_reason": "Cause reason",
        },
        width=12,
        height=9,
    )
    by_step = state_timeline(
        "Runbook steps over time",
        "The worst status of each runbook step across the selected namespaces.",
        [Query(worst_status("check"), "{{check}}")],
        STATUS,
        height=7,
    )
    over_time = [
        timeseries(
            "Failing objects by runbook step",
            "How many objects fail each runbook step.",
            [Query(f"count by (check) ({failing})", "{{check}}")],
            stack=True,
        ),
        timeseries(
            "Failing objects by namespace",
            "Where the failures are.",
            [Query(f"count by (namespace) ({failing})", "{{namespace}}")],
            stack=True,
        ),
        timeseries(
            "Failure reasons",
            "Objects failing or warning, by runbook step and reason.",
            [
                Query(
                    "count by (check, reason) (max by (cluster, check, namespace, kind, name, reason) "
                    f"({sel('lbdoctor_check_failure_reason')}))",
                    "{{check}}: {{reason}}",
                )
            ],
            stack=True,
        ),
        timeseries(
            "Targets marked unhealthy, by load balancer type",
            "Targets the load balancer marks unhealthy by its thresholds, per alb / nlb / tgb.",
            [Query(f"count by (lb) ({sel('lbdoctor_probe_predicted_healthy')} == 0)", "{{lb}}")],
            stack=True,
        ),
    ]
    unhealthy = state_timeline(
        "Targets that are not healthy",
        "Predicted load-balancer state of every target that was unhealthy at some point in the range.",
        [
            Query(
                f"max by (namespace, service, pod) ({sel('lbdoctor_probe_predicted_healthy')})\n"
                "and on (namespace, service, pod)\n"
                "(min by (namespace, service, pod) "
                f"(min_over_time({sel('lbdoctor_probe_predicted_healthy')}[$__range])) == 0)",
                "{{namespace}}/{{service}} {{pod}}",
            )
        ],
        HEALTHY,
        height=8,
    )
    unhealthy.links = [Link("Runbook: health check failing", runbook("LbDoctorHealthCheckFailing.md"))]
    return Dashboard(
        UID,
        "lbdoctor / Overview",
        "Which steps of the EKS load-balancer health-check runbook fail, where, and since when.",
        [datasource_variable(), cluster_variable(), namespace_variable()],
        [stats, [roots, consequences], [now], [by_step], over_time[:2], over_time[2:], [unhealthy]],
        links=[runbooks_link()],
    )
