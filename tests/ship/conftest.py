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

import pytest

from tests.test_demo import settled


@dataclass(frozen=True)
class Demo:
    base: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[str]

    @property
    def address(self) -> str:
        return self.base.removeprefix("http://")

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            return str(response.read().decode())


@pytest.fixture(scope="session", name="demo")
def _demo() -> Iterator[Demo]:
    """`lbdoctor demo` as a user runs it, once every seeded fault shows (about 30 s)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--listen", "127.0.0.1:0", "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    base = None
    for line in process.stdout:
        found = re.search(r"status page\s+(http://\S+)/", line)
        if found:
            base = found.group(1)
            break
    assert base, "the demo did not print its status page URL"
    demo = Demo(base, process)
    try:
        deadline = time.monotonic() + 90
        missing = ["not polled yet"]
        while missing and time.monotonic() < deadline:
            missing = settled(json.loads(demo.get("/api/v1/results")))
            if missing:
                time.sleep(1)
        assert not missing, f"the demo never showed: {missing}"
        yield demo
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
