"""The demo's status page in a real browser (Debian's headless Chromium): what a person sees.

Chromium renders the page and hands back the DOM it built (--dump-dom) and a screenshot; the test
reads the failing steps, reasons and fixes from the rendered cards, in the order a person reads them.
"""

from __future__ import annotations

import re
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from exporter.checks.registry import title
from exporter.demo.cluster import CONTROLLER_DENIED_ACTION, CONTROLLER_NAME, SCENARIOS
from tests.conftest import require_tool
from tests.ship.conftest import Demo

pytestmark = pytest.mark.slow

FLAGS = (
    "--headless",
    "--no-sandbox",  # runs as root in CI
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


class Cards(HTMLParser):
    """The problem cards (div.card) with their data attributes and visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, str]] = []
        self.text: list[str] = []
        self._depth = 0  # div nesting inside the current card; 0: not in a card
        self._skip = 0  # inside <style> or <title>: not visible text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if tag in ("style", "script", "title"):
            self._skip += 1
        if tag == "div" and self._depth:
            self._depth += 1
        elif tag == "div" and "card" in attributes.get("class", "").split():
            self._depth = 1
            self.cards.append(
                {"check": attributes.get("data-check", ""), "reason": attributes.get("data-reason", ""), "text": ""}
            )

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title"):
            self._skip -= 1
        if tag == "div" and self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        if self._depth:
            self.cards[-1]["text"] += data


def find_card(page: Cards, check: str, reason: str, name: str) -> dict[str, str] | None:
    """The card showing `check` failing with `reason` for the object or pod named after `name`: its own
    card, or a consequence line in the card of its root cause (a refused health check under the
    targetPort that causes it)."""
    consequence = f"consequence: {title(check)} · {reason}"
    for card in page.cards:
        text = " ".join(card["text"].split())
        if not re.search(rf"\b{re.escape(name)}\b", text):
            continue
        if (card["check"], card["reason"]) == (check, reason) or consequence in text:
            return card
    return None


def chromium(*arguments: str, profile: Path) -> subprocess.CompletedProcess[str]:
    binary = require_tool("chromium")
    return subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *arguments],
        capture_output=True,
        text=True,
        timeout=90,
    )


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_status_page_shows_the_failing_steps_reasons_and_fixes(demo: Demo, output_dir: Path, tmp_path: Path) -> None:
    dumped = chromium("--dump-dom", f"{demo.base}/", profile=tmp_path / "profile")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    (output_dir / "status-page.html").write_text(dumped.stdout)
    page = Cards()
    page.feed(dumped.stdout)
    visible = " ".join(" ".join(page.text).split())
    assert "What fails, root causes first" in visible

    for scenario in SCENARIOS:
        if scenario.expect_reason is None or scenario.expect_check is None:
            continue
        card = find_card(page, scenario.expect_check, scenario.expect_reason, scenario.name)
        assert card is not None, f"{scenario.name}: no card for {scenario.expect_check} {scenario.expect_reason}"
        text = " ".join(card["text"].split())
        assert title(scenario.expect_check) in text, text  # the runbook step, in words
        assert scenario.expect_reason in text, text  # the reason, as shown
        assert "Fix:" in text, text  # and what to do

    # Root causes first: the crash-looping pod is the problem shown; its refused health check is a
    # consequence line in that card, not a problem of its own. Failures come before warnings.
    crash = next(card for card in page.cards if card["reason"] == "CrashLoopBackOff")
    assert "consequence" in crash["text"] and "ConnectionRefused" in crash["text"]
    assert not [c for c in page.cards if c["check"] == "health_probe" and "checkout-2e1f0-tuvwx" in c["text"]]
    severities = [card["text"].split()[0] for card in page.cards]
    assert severities == sorted(severities, key=["fail", "warn"].index), severities
    # Healthy services are listed as healthy, with no problem card.
    for scenario in SCENARIOS:
        if scenario.expect_reason is None and scenario.cluster_reason is None:
            assert scenario.name in visible
            assert not [c for c in page.cards if scenario.name in c["text"]], scenario.name


def test_status_page_screenshot(demo: Demo, output_dir: Path, tmp_path: Path) -> None:
    shot = output_dir / "status-page.png"
    taken = chromium(f"--screenshot={shot}", "--window-size=1400,1800", f"{demo.base}/", profile=tmp_path / "profile")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert png_size(shot) == (1400, 1800)
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one (a blank PNG is a few KB)


def test_cluster_role_status_page_shows_the_object_findings(demo: Demo, output_dir: Path, tmp_path: Path) -> None:
    """The cluster role's page: the Kubernetes steps of the runbook for every load balancer, and the
    controller's missing IAM permission."""
    dumped = chromium("--dump-dom", f"{demo.cluster}/", profile=tmp_path / "profile")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    (output_dir / "cluster-status-page.html").write_text(dumped.stdout)
    page = Cards()
    page.feed(dumped.stdout)
    for scenario in SCENARIOS:
        if scenario.cluster_check is None or scenario.cluster_reason is None:
            continue
        card = find_card(page, scenario.cluster_check, scenario.cluster_reason, scenario.name)
        assert card is not None, f"{scenario.name}: no card for {scenario.cluster_check} {scenario.cluster_reason}"
        text = " ".join(card["text"].split())
        assert title(scenario.cluster_check) in text and "Fix:" in text, text
    denied = find_card(page, "controller", "ControllerAccessDenied", CONTROLLER_NAME)
    assert denied is not None and CONTROLLER_DENIED_ACTION in denied["text"]
