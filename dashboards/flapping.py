"""lbdoctor / Flapping targets: targets that keep changing state, as a state timeline."""

from __future__ import annotations

from dashboards.common import HEALTHY, PROBE, cluster_variable, matcher, namespace_variable, runbook, runbooks_link, sel
from dashboards.grafana import (
    Dashboard,
    Link,
    Query,
    datasource_variable,
    link_override,
    state_timeline,
    status_history,
    table,
    timeseries,
)

UID = "lbdoctor-flapping"
TARGET = "namespace, service, owner, pod"


def changed(metric: str) -> str:
    """`metric` for the targets whose predicted state changed in the dashboard's time range."""
    return (
        f"max by ({TARGET}) ({sel(metric)})\n"
        f"and on ({TARGET})\n"
        f"(sum by ({TARGET}) (increase({sel('lbdoctor_probe_transitions_total')}[$__range])) > 0)"
    )


def build() -> Dashboard:
    top = table(
        "Most state changes in the time range",
        "Targets by healthy/unhealthy changes of the load balancer's state (predicted) in the time range.",
        [
            Query(
                "sort_desc(topk(25, sum by (namespace, service, owner, pod, lb, port) "
                f"(increase({sel('lbdoctor_probe_transitions_total')}[$__range])) > 0))"
            )
        ],
        columns={
            "namespace": "Namespace",
            "service": "Service",
            "pod": "Pod",
            "owner": "Target group of",
            "lb": "LB",
            "port": "Port",
            "Value": "Changes",
        },
        width=14,
        overrides=[
            link_override(
                "Service",
                "Service drill-down",
                "/d/lbdoctor-service/lbdoctor-service?${datasource:queryparam}&${cluster:queryparam}"
                "&var-namespace=${__data.fields.Namespace}&var-service=${__value.raw}&${__url_time_range}",
            ),
            {"matcher": {"id": "byName", "options": "Changes"}, "properties": [{"id": "decimals", "value": 0}]},
        ],
    )
    top.links = [Link("Runbook: flapping target", runbook("LbDoctorTargetFlapping.md"))]
    reported = table(
        "Reported Flapping",
        "Objects lbdoctor reports with health_probe / Flapping now (two or more changes in 10 minutes).",
        [
            Query(
                "max by (namespace, kind, name) ("
                + sel(
                    "lbdoctor_check_failure_reason",
                    matcher("check", "=", "health_probe"),
                    matcher("reason", "=", "Flapping"),
                )
                + ")"
            )
        ],
        columns={"namespace": "Namespace", "kind": "Kind", "name": "Name"},
        width=10,
    )
    timeline = state_timeline(
        "Load balancer's state of targets that changed",
        "Healthy and unhealthy spells of each target that changed state in the time range, by the load "
        "balancer's thresholds. A regular rhythm points at something periodic in the app.",
        [Query(changed("lbdoctor_probe_predicted_healthy"), "{{namespace}}/{{service}} {{pod}} ({{owner}})")],
        HEALTHY,
        height=10,
    )
    timeline.links = [Link("Runbook: flapping target", runbook("LbDoctorTargetFlapping.md"))]
    history = status_history(
        "Health-check results of targets that changed",
        "The last health-check result at each point in time: single failures that the thresholds absorb show here.",
        [Query(changed("lbdoctor_probe_success"), "{{namespace}}/{{service}} {{pod}} ({{owner}})")],
        PROBE,
        height=10,
    )
    rate = timeseries(
        "State changes",
        "Changes of the load balancer's state (predicted) per target.",
        [
            Query(
                f"sum by ({TARGET}) (increase({sel('lbdoctor_probe_transitions_total')}[$__rate_interval])) > 0",
                "{{namespace}}/{{service}} {{pod}} ({{owner}})",
            )
        ],
        width=24,
        bars=True,
    )
    return Dashboard(
        UID,
        "lbdoctor / Flapping targets",
        "Load-balancer targets that keep changing between healthy and unhealthy.",
        [datasource_variable(), cluster_variable(), namespace_variable()],
        [[top, reported], [timeline], [history], [rate]],
        links=[runbooks_link()],
    )
