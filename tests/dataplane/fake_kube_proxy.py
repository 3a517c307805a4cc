"""A stand-in for kube-proxy's HTTP endpoints on loopback: /healthz (10256) and /metrics, /proxyMode (10249).

Answers are shaped as docs/kube-proxy.md §9 describes them; a test changes them between rounds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aiohttp import web

LAST = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
QUEUED = "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"


def metrics_text(synced: dict[str, float], queued: dict[str, float]) -> str:
    """kube-proxy's sync gauges; family keys "" print without labels (before 1.33), else ip_family="…"."""
    lines = []
    for name, values, text in (
        (LAST, synced, "The last time proxy rules were successfully synced."),
        (QUEUED, queued, "The last time a sync of proxy rules was queued."),
    ):
        lines += [f"# HELP {name} [ALPHA] {text}", f"# TYPE {name} gauge"]
        for family, value in values.items():
            labels = f'{{ip_family="{family}"}}' if family else ""
            lines.append(f"{name}{labels} {value:.9e}")
    lines += [
        "# HELP kubeproxy_sync_proxy_rules_iptables_restore_failures_total [ALPHA] Cumulative proxy iptables restore failures",
        "# TYPE kubeproxy_sync_proxy_rules_iptables_restore_failures_total counter",
        "kubeproxy_sync_proxy_rules_iptables_restore_failures_total 0",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class FakeKubeProxy:
    healthz_status: int = 200
    node_eligible: bool = True
    mode: str = "iptables"
    synced: dict[str, float] = field(default_factory=lambda: {"IPv4": 1000.0})
    queued: dict[str, float] = field(default_factory=lambda: {"IPv4": 990.0})
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def healthz_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/healthz"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    async def _healthz(self, _request: web.Request) -> web.Response:
        body = {
            "lastUpdated": "2026-11-27T01:00:00Z",
            "currentTime": "2026-11-27T01:00:05Z",
            "nodeEligible": self.node_eligible,
            "healthy": self.healthz_status == 200,
        }
        return web.Response(status=self.healthz_status, text=json.dumps(body), content_type="application/json")

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(text=metrics_text(self.synced, self.queued))

    async def _mode(self, _request: web.Request) -> web.Response:
        return web.Response(text=self.mode)

    async def __aenter__(self) -> FakeKubeProxy:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/proxyMode", self._mode)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
