"""The metric contract (docs/metrics.md) as data, and metric names read out of PromQL.

Shared by the alert, dashboard and end-to-end tests: each checks its queries against what lbdoctor
documents, and against what the demo really exposes.
"""

from __future__ import annotations

import re
from pathlib import Path

from exporter.checks.registry import REGISTRY, Needs

ROOT = Path(__file__).resolve().parents[2]
METRICS_DOC = ROOT / "docs" / "metrics.md"

_NAME = re.compile(r"\blbdoctor_[a-z0-9_]+\b")
_SUFFIXES = ("_bucket", "_count", "_sum")

# Metrics of features still being built (docs/metrics.md lists them as planned). Queries over them are
# pending: they must parse, but cannot return data yet. Each test that uses this list fails once a
# name appears in the demo's exposition, so the list shrinks as the features land. Every metric has
# landed: the list is empty and stays as the place for the next ones.
PLANNED_METRICS: frozenset[str] = frozenset()
# Runbook steps (the `check` label) the demo cannot show: selectors on them match nothing there.
PLANNED_CHECKS: frozenset[str] = frozenset()

# Built, and shown by the demo only with its optional parts: its AWS (moto[server], which the demo and
# test extras install) and its kube-proxy network namespace (root; CI runs as root).
AWS_METRICS = frozenset({"lbdoctor_elb_target_state", "lbdoctor_aws_api_requests_total"})
# The runbook steps that need AWS, as the check registry says.
AWS_STEPS = frozenset(spec.check.value for spec in REGISTRY if spec.needs is Needs.AWS)
KUBE_PROXY_METRICS = frozenset(
    {
        "lbdoctor_kube_proxy_rules_missing",
        "lbdoctor_kube_proxy_rules_stale",
        "lbdoctor_kube_proxy_sync_lag_seconds",
        "lbdoctor_kube_proxy_healthy",
    }
)


def unshown() -> dict[str, str]:
    """Metric names and runbook steps the demo cannot show on this machine, with why."""
    from exporter.demo import aws, kube_proxy

    found: dict[str, str] = {}
    if aws.missing() is not None:
        found.update(dict.fromkeys(AWS_METRICS | AWS_STEPS, f"the demo's AWS: {aws.missing()}"))
    if kube_proxy.missing() is not None:
        found.update(dict.fromkeys(KUBE_PROXY_METRICS, f"the demo's kube-proxy: {kube_proxy.missing()}"))
    return found


# Built counters with labels: a series exists only after the first event (an error, a watch restart),
# which the demo does not produce. Their queries are checked once the demo shows them.
EVENT_ONLY_METRICS = frozenset({"lbdoctor_errors_total", "lbdoctor_kube_watch_restarts_total"})
# Series Prometheus itself makes for every scrape target.
PROMETHEUS_METRICS = frozenset({"up", "scrape_samples_scraped", "scrape_duration_seconds", "ALERTS"})


def documented_metrics() -> set[str]:
    """Every lbdoctor metric name docs/metrics.md mentions (built or planned)."""
    return set(_NAME.findall(METRICS_DOC.read_text()))


def planned_in_docs() -> set[str]:
    """The names docs/metrics.md lists as planned (its paragraphs that start with "Planned")."""
    paragraphs = METRICS_DOC.read_text().split("\n\n")
    return {name for paragraph in paragraphs if paragraph.startswith("Planned") for name in _NAME.findall(paragraph)}


def metric_names(expr: str) -> set[str]:
    """The lbdoctor metric names a PromQL expression selects; histogram series map to their family."""
    names = set()
    for name in _NAME.findall(expr):
        for suffix in _SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix).endswith("_seconds"):
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def other_metric_names(expr: str) -> set[str]:
    """Non-lbdoctor series a query selects (Prometheus's own: up, scrape_samples_scraped, …)."""
    found = set()
    for name in PROMETHEUS_METRICS:
        if re.search(rf"(?<![A-Za-z0-9_\"]){name}(?=\s*[{{\[)])", expr):
            found.add(name)
    return found


def checks_selected(expr: str) -> set[str]:
    """Runbook steps an expression selects by `check="…"`."""
    return set(re.findall(r'check="([a-z_]+)"', expr))


def exposed_families(exposition: str) -> set[str]:
    """Family names in an exposition (from its # TYPE lines; counters carry _total as they are queried)."""
    families = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            if kind == "counter" and not name.endswith("_total"):
                name += "_total"
            families.add(name)
    return families


def exposed_with_samples(exposition: str) -> set[str]:
    """Family names that have at least one sample in the exposition."""
    names = set()
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            names |= metric_names(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def pending_because(expr: str, exposition: str) -> str | None:
    """Why a query cannot return data against the demo yet, or None when it must."""
    names = metric_names(expr)
    planned = names & PLANNED_METRICS
    if planned:
        return f"planned metric {sorted(planned)[0]}"
    checks = checks_selected(expr) & PLANNED_CHECKS
    if checks:
        return f"planned check {sorted(checks)[0]}"
    missing = unshown()
    for name in sorted(names | checks_selected(expr)):
        if name in missing:
            return f"{name} needs {missing[name]}"
    quiet = (names & EVENT_ONLY_METRICS) - exposed_with_samples(exposition)
    if quiet:
        return f"{sorted(quiet)[0]} has no event in the demo"
    return None
