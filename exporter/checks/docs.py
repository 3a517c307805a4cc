"""The documentation's tables of checks and causal rules, rendered from the registry and the rules table.

``python -m exporter.checks.docs`` rewrites them in README.md and docs/ between their markers
(``<!-- generated:NAME -->`` … ``<!-- end generated:NAME -->``); tests/test_registry.py fails while a
table differs from what this renders, so the docs cannot drift from the code.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from exporter.checks.causes import RULES, Rule
from exporter.checks.registry import AWS_PROBLEM_REASONS, REGISTRY, Needs
from exporter.model.results import Reason

ROOT = Path(__file__).resolve().parents[2]


def _codes(reasons: Iterable[Reason | str]) -> str:
    return ", ".join(f"`{reason}`" for reason in reasons)


def readme_table() -> str:
    lines = ["| runbook step | check id | examples of reasons |", "|---|---|---|"]
    lines += [f"| {spec.step} | `{spec.check}` | {_codes(spec.examples)} |" for spec in REGISTRY]
    return "\n".join(lines)


def design_table() -> str:
    lines = [
        "| check id | runbook step | runs in | what it looks at | example reasons (closed set, CamelCase) |",
        "|---|---|---|---|---|",
    ]
    for spec in REGISTRY:
        roles = " and ".join(f"{role} role" for role in sorted(spec.roles))
        lines.append(f"| `{spec.check}` | {spec.step} | {roles} | {spec.reads} | {_codes(spec.examples)} |")
    return "\n".join(lines)


def metrics_table() -> str:
    lines = ["| check | reasons |", "|---|---|"]
    for spec in REGISTRY:
        text = _codes(spec.reasons)
        if spec.unknown_reasons:
            text += f"; `unknown`: {_codes(spec.unknown_reasons)}"
        lines.append(f"| `{spec.check}` | {text} |")
    lines.append(
        f"| any AWS check | {_codes(AWS_PROBLEM_REASONS)} (`unknown`: lbdoctor could not ask; the message names the "
        "IAM action) |"
    )
    return "\n".join(lines)


_DIAGNOSE_RUNS = {
    Needs.NOTHING: "yes",
    Needs.NODE_AGENT: "no: needs the node agent (pod IPs are rarely reachable from a laptop)",
    Needs.NODE_DUMP: "with `--node NAME --iptables-save-file FILE` (or `--nft-json-file`)",
    Needs.AWS: "with AWS credentials and the cluster's name",
}


def diagnose_table() -> str:
    lines = ["| step | check id | in `diagnose` | from |", "|---|---|---|---|"]
    lines += [f"| {spec.title} | `{spec.check}` | {_DIAGNOSE_RUNS[spec.needs]} | {spec.reads} |" for spec in REGISTRY]
    return "\n".join(lines)


def _side(check: str, reasons: Sequence[Reason], kinds: Iterable[str], *, failing: bool = False) -> str:
    text = f"`{check}` " + (_codes(sorted(reasons, key=str)) if reasons else "any reason")
    notes = [f"on {', '.join(sorted(kinds))}"] if kinds else []
    notes += ["failing only"] if failing else []
    return text + (f" ({'; '.join(notes)})" if notes else "")


def rules_table(rules: Sequence[Rule] = RULES) -> str:
    lines = ["| # | cause | explains | when both are about the same | because |", "|---|---|---|---|---|"]
    for number, rule in enumerate(rules, 1):
        cause = _side(rule.cause, sorted(rule.cause_reasons), rule.cause_kinds, failing=len(rule.cause_statuses) == 1)
        effect = _side(rule.effect, sorted(rule.effect_reasons), rule.effect_kinds)
        via = " or ".join(f"`{kind}`" for kind in rule.via)
        lines.append(f"| {number} | {cause} | {effect} | {via} | {rule.why} |")
    return "\n".join(lines)


TABLES: dict[str, tuple[str, Callable[[], str]]] = {
    "checks-readme": ("README.md", readme_table),
    "checks-design": ("docs/design.md", design_table),
    "checks-metrics": ("docs/metrics.md", metrics_table),
    "checks-diagnose": ("docs/diagnose.md", diagnose_table),
    "causal-rules": ("docs/diagnose.md", rules_table),
}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated:{name} -->\n)(.*?)(\n<!-- end generated:{name} -->)", re.DOTALL)


def current(name: str) -> str | None:
    """The table as the file has it now, or None without markers."""
    path, _ = TABLES[name]
    found = _pattern(name).search((ROOT / path).read_text())
    return found.group(2) if found else None


def rewrite() -> list[str]:
    """Render every table into its file; returns the names that changed."""
    changed = []
    for name, (path, render) in TABLES.items():
        file = ROOT / path
        text = file.read_text()
        pattern = _pattern(name)
        if not pattern.search(text):
            raise SystemExit(f"{path} has no <!-- generated:{name} --> markers")
        new = pattern.sub(lambda match: match.group(1) + render() + match.group(3), text)  # noqa: B023
        if new != text:
            file.write_text(new)
            changed.append(name)
    return changed


if __name__ == "__main__":
    print("\n".join(f"rewrote {name}" for name in rewrite()) or "tables are current", file=sys.stderr)
