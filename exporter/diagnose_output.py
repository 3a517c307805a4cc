"""How ``lbdoctor diagnose`` talks to a terminal: a progress line while listing, then the runbook."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from exporter.checks.registry import REGISTRY
from exporter.model.results import Check, CheckResult, Status
from exporter.model.snapshot import ClusterSnapshot

_STYLE = {Status.FAIL: "bold red", Status.WARN: "yellow", Status.UNKNOWN: "magenta", Status.OK: "green"}


@contextmanager
def progress(output: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr while the cluster is listed; silent when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield lambda _text: None
        return
    console = Console(stderr=True)
    with console.status("connecting…") as status:
        yield lambda text: status.update(text)


def table(
    results: Sequence[CheckResult], snapshot: ClusterSnapshot, show_ok: bool, not_run: Mapping[Check, str]
) -> None:
    console = Console() if sys.stdout.isatty() else Console(width=120)
    counts: dict[str, dict[Status, int]] = {}
    for result in results:
        per = counts.setdefault(result.check.value, {})
        per[result.status] = per.get(result.status, 0) + 1

    runbook = Table(title="The runbook", title_justify="left", show_lines=False)
    runbook.columns.clear()
    runbook.add_column("Step")
    runbook.add_column("Check id")
    runbook.add_column("Status")
    runbook.add_column("Results")
    for entry in REGISTRY:
        check = entry.check
        found = counts.get(check.value)
        if found:
            worst = max(found, key=lambda s: s.severity)
            detail = ", ".join(
                f"{found[s]} {s.value}" for s in (Status.FAIL, Status.WARN, Status.UNKNOWN, Status.OK) if s in found
            )
            runbook.add_row(entry.title, check.value, Text(worst.value, _STYLE[worst]), detail)
        else:
            why = not_run.get(check, "nothing to check")
            runbook.add_row(entry.title, check.value, Text("not run", "dim"), Text(why, "dim"))
    console.print(runbook)

    shown = [r for r in results if show_ok or r.status is not Status.OK]
    index = {result.key: position + 1 for position, result in enumerate(shown)}
    if shown:
        console.print()
        console.print(Text("What was found, root causes first", style="italic"))
    for position, result in enumerate(shown, start=1):
        where = f"{result.object.kind} {result.object.namespace}/{result.object.name}".replace(" /", " ")
        if result.target and result.target.pod and result.object.kind != "Pod":
            where += f" (pod {result.target.pod})"
        cause = index.get(result.caused_by) if result.caused_by is not None else None
        indent = "      " if cause else "  "
        head = Text(f"{indent}{position:>2}  ")
        head.append(f"{result.status.value.upper():<7}", _STYLE[result.status])
        head.append(f"{result.check.value}", "bold")
        if result.reason:
            head.append(f" · {result.reason.value}", "bold")
        head.append(f" · {where}")
        if cause:
            head.append(f"  ↳ follows from #{cause}", "dim")
        console.print(head)
        block = Table.grid(padding=(0, 1))
        block.add_column(no_wrap=True)
        block.add_column(overflow="fold")
        block.add_row(Text("found"), Text(result.message))
        if result.remedy:
            block.add_row(Text("do", "green"), Text(result.remedy))
        console.print(Padding(block, (0, 0, 0, len(indent) + 4)))
    failing = sum(1 for r in results if r.status is Status.FAIL)
    warning = sum(1 for r in results if r.status is Status.WARN)
    passing = sum(1 for r in results if r.status is Status.OK)
    summary = f"{failing} failing, {warning} warnings, {passing} passing"
    hidden = "" if show_ok else " (passing results hidden; --show-ok lists them)"
    console.print(f"{summary}{hidden}. Objects read: {len(snapshot.services):,} Services, {len(snapshot.pods):,} pods.")
    if snapshot.forbidden:
        # Silence would read as "nothing wrong" where lbdoctor could not look.
        hidden_from = ", ".join(sorted(snapshot.forbidden))
        console.print(
            Text(
                f"Not allowed to list {hidden_from} (RBAC): their objects are left out, and the checks that need "
                "them say unknown (Forbidden).",
                "yellow",
            )
        )
