"""The Grafana dashboards: regenerated without a diff, provisioning-safe, and querying only real metrics.

Re-implements the dashboard-linter rules that matter here (it ships only as Go binaries): datasource
variable on every panel and target, counters only inside rate/increase, units and descriptions set.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.__main__ import dashboards, render
from dashboards.common import RUNBOOK_BASE
from exporter.model.results import Check
from tests.ship.conftest import Demo
from tests.ship.contract import (
    EVENT_ONLY_METRICS,
    PLANNED_CHECKS,
    PLANNED_METRICS,
    PROMETHEUS_METRICS,
    ROOT,
    documented_metrics,
    exposed_families,
    metric_names,
    other_metric_names,
    planned_in_docs,
    unshown,
)

FOLDER = ROOT / "dashboards"
FILES = sorted(FOLDER.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def queries() -> list[tuple[str, str, str]]:
    found = []
    for path in FILES:
        for panel in load(path)["panels"]:
            found.extend((path.name, panel["title"], target["expr"]) for target in panel["targets"])
        for variable in load(path)["templating"]["list"]:
            if variable["type"] == "query":
                found.append((path.name, f"${variable['name']}", variable["query"]))
    return found


def test_regenerating_leaves_no_diff() -> None:
    generated = {name: render(dashboard) for name, dashboard in dashboards().items()}
    assert sorted(generated) == [path.name for path in FILES], "run: python -m dashboards"
    for path in FILES:
        assert path.read_text() == generated[path.name], f"{path.name} is stale: run python -m dashboards"


def test_the_five_dashboards() -> None:
    uids = {load(path)["uid"] for path in FILES}
    assert uids == {
        "lbdoctor-overview",
        "lbdoctor-service",
        "lbdoctor-flapping",
        "lbdoctor-kube-proxy",
        "lbdoctor-self",
    }


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_provisioning_safe_and_consistent(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["uid"] == path.stem and len(dashboard["uid"]) <= 40  # Grafana rejects longer uids
    assert dashboard["title"].startswith("lbdoctor / ")
    assert "lbdoctor" in dashboard["tags"]
    assert "__inputs" not in dashboard  # exported-dashboard inputs break file provisioning
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert "cluster" in variables and variables["cluster"]["allValue"] == ".*"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        where = f"{path.name} / {panel['title']}"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["description"], where
        assert panel["fieldConfig"]["defaults"]["unit"], where
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, where
        assert panel["targets"], where
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), where
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", where


def test_queries_select_the_cluster_and_use_counters_correctly() -> None:
    for dashboard, title, expr in queries():
        where = f"{dashboard} / {title}: {expr}"
        for matchers in re.findall(r"\blbdoctor_[a-z0-9_]+\{([^}]*)\}", expr):
            assert 'cluster=~"$cluster"' in matchers, where
        # A counter is only meaningful as a rate or an increase over a range (dashboard-linter's
        # target-counter-agg); histogram buckets likewise.
        for name in re.findall(r"\b(lbdoctor_[a-z0-9_]+(?:_total|_bucket))\b", expr):
            assert re.search(rf"(rate|increase)\({name}\{{[^}}]*\}}\[", expr), where
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window in ("$__rate_interval", "$__range", "15m", "1h"), where


def test_every_metric_is_documented() -> None:
    documented = documented_metrics()
    for dashboard, title, expr in queries():
        unknown = metric_names(expr) - documented
        assert not unknown, f"{dashboard} / {title} uses metrics docs/metrics.md does not list: {unknown}"
        bare = {name for name in re.findall(r"(?<![\w\"$])([a-z_]+)\{", expr) if not name.startswith("lbdoctor_")}
        assert bare <= PROMETHEUS_METRICS, f"{dashboard} / {title}: unknown series {bare}"
        assert other_metric_names(expr) <= PROMETHEUS_METRICS


def test_metrics_the_demo_exposes_are_in_its_exposition(demo: Demo) -> None:
    """Every built metric a dashboard uses is on the demo's /metrics; planned ones are not yet."""
    exposition = demo.exposition()
    families = exposed_families(exposition)
    used = set().union(*(metric_names(expr) for _, _, expr in queries()))
    missing = used - PLANNED_METRICS - set(unshown()) - families
    assert not missing, f"dashboards use metrics the demo does not expose: {missing}"
    assert used & PLANNED_METRICS == PLANNED_METRICS, "a pending metric is no longer used: drop it from the list"


def test_pending_lists_are_current(demo: Demo) -> None:
    """The pending lists (tests/ship/contract.py) shrink as features land: a planned name that shows in
    the demo's exposition fails here until it is removed from the list."""
    exposition = demo.exposition()
    families = exposed_families(exposition)
    landed = PLANNED_METRICS & families
    assert not landed, f"these metrics have landed: remove them from PLANNED_METRICS: {landed}"
    assert planned_in_docs() | documented_metrics() >= PLANNED_METRICS
    checks = set(re.findall(r'check="([a-z_]+)"', exposition))
    assert not PLANNED_CHECKS & checks, (
        f"these checks have landed: remove them from PLANNED_CHECKS: {PLANNED_CHECKS & checks}"
    )
    # Event-only counters are registered (HELP/TYPE) even before their first sample.
    assert families >= EVENT_ONLY_METRICS


def test_links_point_at_runbook_pages_and_dashboards_that_exist() -> None:
    alerts = yaml.safe_load((ROOT / "alerts" / "lbdoctor.rules.yaml").read_text())
    urls = [rule["annotations"]["runbook_url"] for group in alerts["groups"] for rule in group["rules"]]
    assert all(url.startswith(RUNBOOK_BASE) for url in urls), "alerts and dashboards must share the runbook base"
    uids = {load(path)["uid"] for path in FILES}
    index = (ROOT / "docs" / "runbooks" / "README.md").read_text()
    text = "\n".join(path.read_text() for path in FILES)
    for url in re.findall(r'"url": "([^"]+)"', text):
        if url.startswith(RUNBOOK_BASE):
            page, _, anchor = url.removeprefix(RUNBOOK_BASE).partition("#")
            assert (ROOT / "docs" / "runbooks" / page).is_file(), url
            if anchor and anchor != "${__value.raw}":
                assert f"### {anchor}\n" in index, url
        elif url.startswith("/d/"):
            assert url.split("/")[2] in uids, url
    # The overview links each failing step to its section of the runbook index.
    for check in Check:
        assert f"### {check.value}\n" in index, f"docs/runbooks/README.md has no section for step {check.value}"
