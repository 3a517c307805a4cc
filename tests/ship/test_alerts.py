"""The alert rules: promtool accepts and unit-tests them, every alert is tested both ways, conventions hold.

promtool 2.42 passes a test that names an unknown alert or whose rule_files glob matches nothing, and
compares only firing alerts; `coverage_problems` closes those gaps and is itself tested on a doctored
copy of the test files.
"""

from __future__ import annotations

import copy
import glob
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.common import RUNBOOK_BASE
from tests.conftest import require_tool
from tests.ship.contract import ROOT, documented_metrics, metric_names

RULES = ROOT / "alerts" / "lbdoctor.rules.yaml"
TESTS = sorted((ROOT / "alerts" / "tests").glob("*.yaml"))
RUNBOOKS = ROOT / "docs" / "runbooks"
NAME = re.compile(r"^LbDoctor[A-Z][A-Za-z]+$")


def alerts() -> list[dict[str, Any]]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def suites_on_disk() -> dict[Path, dict[str, Any]]:
    return {path: yaml.safe_load(path.read_text()) for path in TESTS}


def coverage_problems(names: set[str], suites: dict[Path, dict[str, Any]]) -> list[str]:
    """What promtool would let pass silently: a glob matching nothing, a group without `interval`,
    an unknown alert name, an alert with no firing case or no case where it must stay silent."""
    problems = []
    firing: set[str] = set()
    silent: set[str] = set()
    for path, suite in suites.items():
        for pattern in suite.get("rule_files", []):
            if not glob.glob(str(path.parent / pattern)):
                problems.append(f"{path.name}: rule_files {pattern!r} matches nothing")
        for group in suite.get("tests", []):
            if "interval" not in group:
                problems.append(f"{path.name}: test {group.get('name')!r} has no interval (promtool 2.42 needs it)")
            for case in group.get("alert_rule_test", []):
                name = case["alertname"]
                if name not in names:
                    problems.append(f"{path.name}: test names unknown alert {name}")
                (firing if case.get("exp_alerts") else silent).add(name)
    problems += [f"{name}: no test where it fires" for name in sorted(names - firing)]
    problems += [f"{name}: no test where it must not fire" for name in sorted(names - silent)]
    return problems


def test_promtool_checks_the_rules() -> None:
    promtool = require_tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout


@pytest.mark.parametrize("path", TESTS, ids=[path.name for path in TESTS])
def test_promtool_unit_tests_pass(path: Path) -> None:
    promtool = require_tool("promtool")
    tested = subprocess.run([promtool, "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout and "WARNING" not in tested.stdout + tested.stderr


def test_every_alert_fires_in_a_test_and_stays_silent_in_another() -> None:
    assert coverage_problems({rule["alert"] for rule in alerts()}, suites_on_disk()) == []


def test_coverage_check_catches_what_promtool_lets_pass() -> None:
    suites = copy.deepcopy(suites_on_disk())
    names = {rule["alert"] for rule in alerts()}
    path, suite = next(iter(suites.items()))
    suite["rule_files"] = ["../no-such-file.yaml"]
    group = suite["tests"][0]
    del group["interval"]
    victim = next(case["alertname"] for case in group["alert_rule_test"] if case.get("exp_alerts"))
    for other in suites.values():
        for other_group in other["tests"]:
            other_group["alert_rule_test"] = [
                case
                for case in other_group["alert_rule_test"]
                if not (case["alertname"] == victim and case.get("exp_alerts"))
            ]
    group["alert_rule_test"].append({"eval_time": "1m", "alertname": "LbDoctorNoSuchAlert"})
    problems = coverage_problems(names, suites)
    assert f"{path.name}: rule_files '../no-such-file.yaml' matches nothing" in problems
    assert any("has no interval" in problem for problem in problems)
    assert f"{path.name}: test names unknown alert LbDoctorNoSuchAlert" in problems
    assert f"{victim}: no test where it fires" in problems


def test_alerts_follow_the_mixin_conventions() -> None:
    seen = set()
    for rule in alerts():
        name = rule["alert"]
        assert NAME.match(name), name
        assert name not in seen, f"{name} defined twice"
        seen.add(name)
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        summary, description = rule["annotations"]["summary"], rule["annotations"]["description"]
        assert "{{" not in summary, f"{name}: the summary is the notification headline, keep it static"
        assert summary[0].isupper() and summary.endswith("."), name
        assert description.endswith("."), name
        if "absent(" not in rule["expr"]:  # absent() has no labels to tell instances apart
            assert "{{ $labels." in description, f"{name}: the description should name the object"
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}{name}.md", name


def test_every_selector_has_the_job_and_every_metric_is_documented() -> None:
    """The Helm chart rewrites job="lbdoctor" when users change the job name, so every selector needs it."""
    documented = documented_metrics()
    for rule in alerts():
        expr = rule["expr"]
        for selector in re.findall(r"\b(?:lbdoctor_[a-z0-9_]+|up)\{([^}]*)\}", expr):
            assert 'job="lbdoctor"' in selector, f"{rule['alert']}: {selector}"
        unknown = metric_names(expr) - documented
        assert not unknown, f"{rule['alert']} uses metrics docs/metrics.md does not list: {unknown}"


def test_one_runbook_page_per_alert_with_the_step_and_the_fix() -> None:
    names = {rule["alert"] for rule in alerts()}
    pages = {path.stem for path in RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == names
    index = (RUNBOOKS / "README.md").read_text()
    for name in names:
        page = (RUNBOOKS / f"{name}.md").read_text()
        assert page.startswith(f"# {name}\n"), name
        assert "**Runbook step:**" in page, name
        assert "\n## Fix" in page or "\n## By step" in page, name
        assert f"[{name}]({name}.md)" in index, f"{name} missing from docs/runbooks/README.md"
    for link in re.findall(r"\]\(([^)#]+\.md)", "".join(p.read_text() for p in RUNBOOKS.glob("*.md"))):
        assert (RUNBOOKS / link).resolve().is_file() or link.startswith("http"), link
