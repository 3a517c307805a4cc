"""lbdoctor's own health: build info, errors, watch restarts, cache sync, loop timings, probe lag."""

from __future__ import annotations

import platform

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from exporter import __version__

# _created samples double the counter series and nobody graphs them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


class SelfMetrics:
    def __init__(self, role: str) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        build = Info("lbdoctor_build", "lbdoctor version and role; always 1.", registry=self.registry)
        build.info({"version": __version__, "role": role, "python_version": platform.python_version()})
        self.errors = Counter(
            "lbdoctor_errors",
            "Errors lbdoctor met and survived, by component and kind.",
            ["component", "kind"],
            registry=self.registry,
        )
        self.watch_restarts = Counter(
            "lbdoctor_kube_watch_restarts",
            "Kubernetes watches restarted after an error, a dropped connection or 410 Gone.",
            ["resource"],
            registry=self.registry,
        )
        self.cache_synced = Gauge(
            "lbdoctor_cache_synced",
            "1 once the resource's first list completed (or it is known not to be served).",
            ["resource"],
            registry=self.registry,
        )
        self.last_sync = Gauge(
            "lbdoctor_kube_last_sync_timestamp_seconds",
            "When the resource's cache was last known to be in sync with the API server (a list, a watch "
            "event or bookmark, an open watch), as a Unix time.",
            ["resource"],
            registry=self.registry,
        )
        self.cycle_duration = Gauge(
            "lbdoctor_cycle_duration_seconds",
            "Duration of the last run of each internal loop (evaluate, render).",
            ["loop"],
            registry=self.registry,
        )
        self.probe_lag_histogram = Histogram(
            "lbdoctor_probe_schedule_lag_seconds",
            "How late probes start against their schedule (event-loop or concurrency pressure).",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.probes = Counter(
            "lbdoctor_probes",
            "Health-check probes run, by load balancer kind and result.",
            ["lb", "result"],
            registry=self.registry,
        )
        self.targets = Gauge(
            "lbdoctor_probe_targets",
            "Targets this agent probes, by load balancer kind.",
            ["lb"],
            registry=self.registry,
        )

    # WatchTelemetry / SchedulerTelemetry ------------------------------------------------------
    def watch_started(self, resource: str) -> None:
        # Present at 0 from the start, so increase() sees the first restart.
        self.watch_restarts.labels(resource)

    def watch_restarted(self, resource: str, reason: str) -> None:
        self.watch_restarts.labels(resource).inc()

    def error(self, component: str, kind: str) -> None:
        self.errors.labels(component, kind).inc()

    def probe_lag(self, seconds: float) -> None:
        self.probe_lag_histogram.observe(seconds)

    def probed(self, lb: str, success: bool) -> None:
        self.probes.labels(lb, "success" if success else "failure").inc()

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)
