"""``lbdoctor demo``: fake API server + loopback apps + the node role, in one process."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from exporter import daemon
from exporter.demo import cluster
from exporter.fakeapi import ClusterState, FakeApiServer
from exporter.settings import Settings, parse_listen


def _banner(port: int, host: str, kubeconfig: Path) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    base = f"http://{shown}:{port}"
    lines = [
        "",
        "lbdoctor demo: a simulated EKS cluster is running, with lbdoctor's node agent watching it.",
        f"  status page   {base}/",
        f"  metrics       {base}/metrics",
        f"  JSON API      {base}/api/v1/results",
        f"  kubeconfig    {kubeconfig}  (the fake API server)",
        "",
        "Load-balanced services in namespace 'shop' and what lbdoctor should find:",
    ]
    for scenario in cluster.SCENARIOS:
        found = f"{scenario.expect_check}: {scenario.expect_reason}" if scenario.expect_reason else "healthy"
        lines.append(f"  {scenario.lb.upper()} {scenario.name:<16} {scenario.case}  ->  {found}")
    lines += ["", "Results settle within about 30 s (probes follow each target group's interval). Ctrl-C stops.", ""]
    return "\n".join(lines)


async def run_demo(listen: str, *, exit_after: float | None = None) -> int:
    try:
        host, _ = parse_listen(listen)
    except ValueError as error:
        print(f"lbdoctor: invalid --listen: {error}", file=sys.stderr)
        return 2
    state = ClusterState()
    cluster.seed(state)
    api = FakeApiServer(state, bookmark_interval=30.0)
    await api.start()
    apps = cluster.apps()
    try:
        for app in apps:
            await app.start()
    except OSError as error:
        await api.stop()
        print(f"lbdoctor: the demo could not start its loopback apps: {error}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="lbdoctor-demo-"))
    kubeconfig = api.write_kubeconfig(workdir / "kubeconfig")
    settings = Settings(role="node", node_name=cluster.NODE, kubeconfig=str(kubeconfig), listen=listen)
    stop = asyncio.Event()
    if exit_after is not None:
        asyncio.get_running_loop().call_later(exit_after, stop.set)

    def announce(port: int) -> None:
        print(_banner(port, host, kubeconfig), flush=True)

    try:
        return await daemon.run(settings, stop=stop, on_ready=announce)
    finally:
        for app in apps:
            await app.stop()
        await api.stop()
