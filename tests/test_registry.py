"""The check registry is the one list of checks: the docs' tables are rendered from it (and the causal rules
table from the rules), every reason belongs to a check, and what the checks report stays inside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.checks import docs
from exporter.checks.registry import AWS_PROBLEM_REASONS, REGISTRY, SPECS, Needs, Role, position
from exporter.diagnose import not_run
from exporter.metrics import names
from exporter.model.results import Check, Reason

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", sorted(docs.TABLES))
def test_the_docs_tables_are_rendered_from_the_registry_and_the_rules(name: str) -> None:
    path, render = docs.TABLES[name]
    assert docs.current(name) == render(), f"{path}: run python -m exporter.checks.docs"


def test_every_check_once_in_runbook_order_and_every_reason_owned() -> None:
    assert [spec.check for spec in REGISTRY] == list(SPECS) and set(SPECS) == set(Check)
    assert sorted(position(check) for check in Check) == list(range(len(Check)))
    owned = {reason for spec in REGISTRY for reason in spec.all_reasons} | set(AWS_PROBLEM_REASONS)
    assert owned == set(Reason), f"reasons no check reports: {set(Reason) - owned}"
    for spec in REGISTRY:
        assert spec.roles and set(spec.examples) <= set(spec.reasons), spec.check
        assert len(set(spec.reasons)) == len(spec.reasons), spec.check


def test_the_node_role_runs_only_what_a_node_can_see() -> None:
    node = {spec.check for spec in REGISTRY if Role.NODE in spec.roles}
    assert {Check.HEALTH_PROBE, Check.KUBE_PROXY} <= node
    assert not node & {spec.check for spec in REGISTRY if spec.needs is Needs.AWS}


def test_diagnose_says_what_each_missing_step_needs() -> None:
    skipped = not_run(node_dump=False, aws_not_run="no AWS credentials found")
    assert set(skipped) == {Check.HEALTH_PROBE, Check.KUBE_PROXY, Check.SECURITY_GROUPS, Check.NETWORK, Check.ELB_TARGET_HEALTH}
    assert "node agent" in skipped[Check.HEALTH_PROBE] and "--node NAME" in skipped[Check.KUBE_PROXY]
    assert set(not_run(node_dump=True, aws_not_run=None)) == {Check.HEALTH_PROBE}


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.json")), ids=lambda path: path.stem)
def test_what_diagnose_reports_stays_inside_each_checks_reasons(golden: Path) -> None:
    for result in json.loads(golden.read_text())["results"]:
        if result["reason"] is not None:
            assert result["reason"] in SPECS[Check(result["check"])].all_reasons, result


def test_every_metric_is_documented() -> None:
    documented = (Path(__file__).parents[1] / "docs" / "metrics.md").read_text()
    for metric in (*names.FAMILIES, *names.AWS_FAMILIES):
        assert f"`{metric.name}`" in documented or metric.name in documented, metric.name
