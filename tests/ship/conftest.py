"""Fixtures of the shipping tests: one `lbdoctor demo` for the whole session, settled."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_demo import WITH_AWS, aws_missing, cluster_missing, settled


@dataclass(frozen=True)
class Demo:
    base: str  # the node agent: http://127.0.0.1:PORT
    cluster: str  # the cluster role
    process: subprocess.Popen[str]

    @property
    def addresses(self) -> list[str]:
        """host:port of both roles, as Prometheus scrapes them."""
        return [url.removeprefix("http://") for url in (self.base, self.cluster)]

    def get(self, path: str, base: str | None = None) -> str:
        with urllib.request.urlopen((base or self.base) + path, timeout=10) as response:
            return str(response.read().decode())

    def exposition(self) -> str:
        """Both roles' /metrics: together, what a Prometheus scraping lbdoctor sees."""
        return self.get("/metrics") + self.get("/metrics", self.cluster)


def start_demo(log: Path) -> Demo | None:
    """Start `lbdoctor demo`; None when its fixed loopback "pod" addresses are taken (another demo runs)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--listen", "127.0.0.1:0", "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    urls: dict[str, str] = {}
    for line in process.stdout:
        found = re.search(r"(node agent|cluster role)\s+status page (http://\S+?)/\s", line)
        if found:
            urls[found.group(1)] = found.group(2)
        if len(urls) == 2:
            return Demo(urls["node agent"], urls["cluster role"], process)
    process.wait(timeout=10)
    if "address already in use" in log.read_text():
        return None
    raise AssertionError(f"the demo did not start: {log.read_text()[-2000:]}")


@pytest.fixture(scope="package", name="demo")
def _demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`lbdoctor demo` as a user runs it, once every seeded fault shows (about 30-60 s). Package scope: it
    stops before tests/test_demo.py starts its own on the same addresses."""
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    deadline = time.monotonic() + 120
    demo = start_demo(log)
    while demo is None:  # a demo of another test run on this machine holds the addresses: wait for it
        assert time.monotonic() < deadline, "the demo's loopback addresses stayed in use for 2 minutes"
        time.sleep(2)
        demo = start_demo(log)
    try:
        deadline = time.monotonic() + 90
        missing = ["not polled yet"]
        while missing and time.monotonic() < deadline:
            missing = settled(json.loads(demo.get("/api/v1/results")))
            central = json.loads(demo.get("/api/v1/results", demo.cluster))
            missing += cluster_missing(central) + (aws_missing(central) if WITH_AWS else [])
            if missing:
                time.sleep(1)
        assert not missing, f"the demo never showed: {missing}"
        yield demo
    finally:
        demo.process.terminate()
        try:
            demo.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            demo.process.kill()
            demo.process.wait()
