"""lbdoctor / lbdoctor health: is lbdoctor itself working — scrapes, Kubernetes and AWS APIs, its loops."""

from __future__ import annotations

from dashboards.common import cluster_variable, matcher, runbook, runbooks_link, sel
from dashboards.grafana import (
    Dashboard,
    Link,
    Query,
    datasource_variable,
    query_variable,
    stat,
    state_timeline,
    table,
    timeseries,
    value_mapping,
)

UID = "lbdoctor-self"
JOB = 'job=~"$job"'
INSTANCE = 'instance=~"$instance"'

SYNCED = value_mapping({0: ("not synced", "red"), 1: ("synced", "green")})
UP = value_mapping({0: ("down", "red"), 1: ("up", "green")})


def own(metric: str, *matchers: str) -> str:
    """lbdoctor's own series: per instance, not per namespace (their namespace is lbdoctor's own)."""
    return sel(metric, JOB, INSTANCE, *matchers, namespaced=False)


def build() -> Dashboard:
    stats = [
        stat("Instances up", "lbdoctor instances Prometheus scrapes successfully.", f"sum({own('up')})", bad_from=None),
        stat("Instances down", "lbdoctor instances Prometheus cannot scrape.", f"sum(1 - {own('up')})"),
        stat(
            "Resources not synced",
            "Kubernetes resources an instance has not listed yet (its /readyz fails meanwhile).",
            f"sum(1 - {own('lbdoctor_cache_synced')})",
        ),
        stat(
            "Errors (1h)",
            "Errors lbdoctor met and survived in the last hour.",
            f"sum(increase({own('lbdoctor_errors_total')}[1h]))",
        ),
        stat(
            "Watch restarts (1h)",
            "Kubernetes watches restarted after an error in the last hour.",
            f"sum(increase({own('lbdoctor_kube_watch_restarts_total')}[1h]))",
        ),
        stat(
            "AWS API errors (1h)",
            "AWS API calls of the cluster role that did not succeed in the last hour.",
            f"sum(increase({own('lbdoctor_aws_api_requests_total', matcher('outcome', '!=', 'success'))}[1h]))",
        ),
    ]
    stats[0].links = [Link("Runbook: lbdoctor down", runbook("LbDoctorDown.md"))]
    versions = table(
        "Instances",
        "Each lbdoctor instance: its role, version, and how many series a scrape returns.",
        [
            Query(f"max by (instance, role, version) ({own('lbdoctor_build_info')})"),
            Query(f"max by (instance) ({own('scrape_samples_scraped')})"),
        ],
        columns={"instance": "Instance", "role": "Role", "version": "Version", "Value #B": "Series per scrape"},
        width=12,
    )
    up = state_timeline(
        "Scrapes",
        "Whether Prometheus could scrape each instance.",
        [Query(f"max by (instance) ({own('up')})", "{{instance}}")],
        UP,
        width=12,
    )
    up.links = [Link("Runbook: instance down", runbook("LbDoctorInstanceDown.md"))]
    loops = [
        timeseries(
            "Evaluation and render time",
            "Last duration of the checks' evaluation and of rendering /metrics, per instance.",
            [Query(f"max by (instance, loop) ({own('lbdoctor_cycle_duration_seconds')})", "{{instance}} {{loop}}")],
            unit="s",
        ),
        timeseries(
            "Probe schedule lag (p99)",
            "How late probes start against their schedule: event-loop or concurrency pressure.",
            [
                Query(
                    "histogram_quantile(0.99, sum by (instance, le) "
                    f"(rate({own('lbdoctor_probe_schedule_lag_seconds_bucket')}[$__rate_interval])))",
                    "{{instance}}",
                )
            ],
            unit="s",
        ),
    ]
    probes = [
        timeseries(
            "Probes per second",
            "Health-check probes sent, by load balancer type and result.",
            [
                Query(
                    f"sum by (lb, result) (rate({own('lbdoctor_probes_total')}[$__rate_interval]))", "{{lb}} {{result}}"
                )
            ],
            unit="reqps",
            stack=True,
        ),
        timeseries(
            "Targets probed",
            "Targets each node agent probes, by load balancer type.",
            [Query(f"sum by (instance, lb) ({own('lbdoctor_probe_targets')})", "{{instance}} {{lb}}")],
            stack=True,
        ),
    ]
    kube = [
        state_timeline(
            "Kubernetes resources synced",
            "Whether each instance has listed each resource it watches.",
            [Query(f"min by (instance, resource) ({own('lbdoctor_cache_synced')})", "{{instance}} {{resource}}")],
            SYNCED,
            width=12,
        ),
        timeseries(
            "Watch restarts",
            "Watches restarted after an error, a dropped connection or 410 Gone.",
            [
                Query(
                    "sum by (instance, resource) "
                    f"(increase({own('lbdoctor_kube_watch_restarts_total')}[$__rate_interval]))",
                    "{{instance}} {{resource}}",
                )
            ],
            bars=True,
        ),
    ]
    kube[0].links = [Link("Runbook: cache not synced", runbook("LbDoctorKubeCacheNotSynced.md"))]
    kube[1].links = [Link("Runbook: watches restarting", runbook("LbDoctorKubeWatchRestarting.md"))]
    failures = [
        timeseries(
            "Errors",
            "Errors lbdoctor survived, by component and kind.",
            [
                Query(
                    f"sum by (component, kind) (rate({own('lbdoctor_errors_total')}[$__rate_interval]))",
                    "{{component}} {{kind}}",
                )
            ],
            unit="ops",
            stack=True,
        ),
        timeseries(
            "AWS API calls",
            "The cluster role's AWS API calls by operation and outcome.",
            [
                Query(
                    f"sum by (operation, outcome) (rate({own('lbdoctor_aws_api_requests_total')}[$__rate_interval]))",
                    "{{operation}} {{outcome}}",
                )
            ],
            unit="reqps",
            stack=True,
        ),
    ]
    omitted = [
        timeseries(
            "Failing objects left out of /metrics",
            "Objects failing a runbook step whose own series an instance leaves out, past "
            "metrics_max_object_series (their load balancers' status is complete).",
            [Query(f"max by (instance, check) ({own('lbdoctor_check_objects_omitted')})", "{{instance}} {{check}}")],
            stack=True,
        )
    ]
    failures[1].links = [Link("Runbook: AWS API errors", runbook("LbDoctorAwsApiErrors.md"))]
    omitted[0].links = [Link("Runbook: series left out", runbook("LbDoctorObjectSeriesOmitted.md"))]
    job = query_variable("job", "Job", 'label_values(lbdoctor_build_info{cluster=~"$cluster"}, job)')
    instance = query_variable(
        "instance", "Instance", 'label_values(lbdoctor_build_info{cluster=~"$cluster", job=~"$job"}, instance)'
    )
    return Dashboard(
        UID,
        "lbdoctor / lbdoctor health",
        "lbdoctor's own health: scrapes, its view of the Kubernetes API, its AWS calls, its loops.",
        [datasource_variable(), cluster_variable(), job, instance],
        [stats, [versions, up], loops, probes, kube, failures, omitted],
        links=[runbooks_link()],
    )
