"""A real Prometheus and Alertmanager (Debian's), and a webhook receiver, on loopback for one test module."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web


def free_port() -> int:
    """A port free right now on 127.0.0.1 (for tools that cannot report the port they bound)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_ready(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{what} did not become ready at {url}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Webhook:
    """Alertmanager's webhook receiver: an aiohttp server in a thread, keeping every payload."""

    def __init__(self) -> None:
        self.port = 0
        self.payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="webhook", daemon=True)

    async def _receive(self, request: web.Request) -> web.Response:
        payload = await request.json()
        with self._lock:
            self.payloads.append(payload)
        return web.Response(text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.payloads)


class Alertmanager:
    def __init__(self, workdir: Path, webhook_port: int) -> None:
        self.port = free_port()
        config = {
            "route": {
                "receiver": "hook",
                "group_by": ["alertname"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [{"name": "hook", "webhook_configs": [{"url": f"http://127.0.0.1:{webhook_port}/hook"}]}],
        }
        (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self.process = subprocess.Popen(
            [
                "prometheus-alertmanager",
                f"--config.file={workdir / 'alertmanager.yml'}",
                f"--storage.path={workdir / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip: a single instance on loopback
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "alertmanager.log").open("wb"),
        )
        wait_ready(f"http://127.0.0.1:{self.port}/-/ready", self.process, "alertmanager")


class Prometheus:
    """Scrapes `targets` every second with honor_labels (as the chart's ServiceMonitor does) and
    evaluates rules every second.

    Rules are loaded once the targets have been scraped (`load_rules`), as on a Prometheus that has
    been running: Prometheus's discovery starts scraping only about 5 s after start-up, which a rule
    with a shortened `for:` would otherwise report as lbdoctor being down.
    """

    def __init__(self, workdir: Path, targets: list[str], alertmanager_port: int) -> None:
        self.port = free_port()
        self.rules_file = workdir / "rules.yaml"
        self.rules_file.write_text("groups: []\n")
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(self.rules_file)],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
            "scrape_configs": [
                {"job_name": "lbdoctor", "honor_labels": True, "static_configs": [{"targets": targets}]},
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "prometheus.log").open("wb"),
        )
        self.base = f"http://127.0.0.1:{self.port}"
        wait_ready(f"{self.base}/-/ready", self.process, "prometheus")

    def wait_scraped(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.query("up == 1"):
            assert time.monotonic() < deadline, "prometheus never scraped its targets"
            time.sleep(0.5)

    def load_rules(self, rules: dict[str, Any]) -> int:
        """Write the rule file, reload, and return how many rules Prometheus then has."""
        self.rules_file.write_text(yaml.safe_dump(rules, sort_keys=False))
        request = urllib.request.Request(f"{self.base}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=30):
            pass
        return sum(len(group["rules"]) for group in self.api("rules")["groups"])

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data`, raising on an error status (a query that does not parse)."""
        query = urllib.parse.urlencode(params)
        try:
            document = http_json(f"{self.base}/api/v1/{path}?{query}")
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{path} {params}: HTTP {error.code}: {error.read().decode()}") from None
        assert document["status"] == "success", document
        return document["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        return list(data["result"])

    def firing(self) -> list[dict[str, Any]]:
        return [alert for alert in self.api("alerts")["alerts"] if alert["state"] == "firing"]
