"""``lbdoctor demo``: fake API server + loopback apps + the node and cluster roles, in one process."""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
from pathlib import Path

from exporter import daemon
from exporter.demo import cluster
from exporter.demo.apps import App
from exporter.fakeapi import ClusterState, FakeApiServer
from exporter.settings import Settings, parse_listen


def _banner(ports: dict[str, int], host: str, kubeconfig: Path) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    node, central = f"http://{shown}:{ports['node']}", f"http://{shown}:{ports['cluster']}"
    lines = [
        "",
        "lbdoctor demo: a simulated EKS cluster is running, with lbdoctor's node agent and cluster role watching it.",
        f"  node agent    status page {node}/   metrics {node}/metrics   API {node}/api/v1/results",
        f"  cluster role  status page {central}/   metrics {central}/metrics   API {central}/api/v1/results",
        f"  kubeconfig    {kubeconfig}  (the fake API server)",
        f"  try           lbdoctor diagnose --kubeconfig {kubeconfig} -A",
        "",
        "Load-balanced services in namespace 'shop' and what lbdoctor should find:",
    ]
    for scenario in cluster.SCENARIOS:
        found = []
        if scenario.expect_check and scenario.expect_reason:
            found.append(f"{scenario.expect_check}: {scenario.expect_reason}")
        if scenario.cluster_check and (scenario.cluster_check, scenario.cluster_reason) != (
            scenario.expect_check,
            scenario.expect_reason,
        ):
            found.append(f"{scenario.cluster_check}: {scenario.cluster_reason}")
        via = {"gateway": "[Gateway API] ", "auto-mode": "[EKS Auto Mode] "}.get(scenario.front, "")
        lines.append(
            f"  {scenario.lb.upper()} {scenario.name:<16} {via}{scenario.case}  ->  {'; '.join(found) or 'healthy'}"
        )
    lines.append(
        f"  and the AWS Load Balancer Controller in {cluster.CONTROLLER_NAMESPACE}: its logs show AccessDenied for "
        f"{cluster.CONTROLLER_DENIED_ACTION}  ->  controller: ControllerAccessDenied"
    )
    lines += ["", "Results settle within about 30 s (probes follow each target group's interval). Ctrl-C stops.", ""]
    return "\n".join(lines)


async def _start_apps() -> tuple[str, list[App]]:
    """The pods' apps on a free 127.N network, so several demos (or test runs) can share a machine."""
    error: OSError | None = None
    for octet in random.sample(range(200, 255), 12):
        net = f"127.{octet}"
        apps = cluster.apps(net)
        started: list[App] = []
        try:
            for app in apps:
                try:
                    await app.start()
                except PermissionError:
                    continue  # a port below 1024 without root: nothing listens there, as in the scenario's probe
                started.append(app)
        except OSError as failure:
            error = failure
            for app in started:
                await app.stop()
            continue
        return net, started
    assert error is not None
    raise error


async def run_demo(listen: str, *, exit_after: float | None = None) -> int:
    try:
        host, port = parse_listen(listen)
    except ValueError as error:
        print(f"lbdoctor: invalid --listen: {error}", file=sys.stderr)
        return 2
    try:
        net, apps = await _start_apps()
    except OSError as error:
        print(f"lbdoctor: the demo could not start its loopback apps: {error}", file=sys.stderr)
        return 2
    state = ClusterState()
    cluster.seed(state, net)
    api = FakeApiServer(state, bookmark_interval=30.0)
    await api.start()
    workdir = Path(tempfile.mkdtemp(prefix="lbdoctor-demo-"))
    kubeconfig = api.write_kubeconfig(workdir / "kubeconfig")
    # The simulated node has no kube-proxy forwarding its NodePorts, so instance targets are probed at
    # their pods only; its kube_proxy check says "unknown" and why.
    node = Settings(
        role="node", node_name=cluster.NODE, kubeconfig=str(kubeconfig), listen=listen, probe_node_path=False
    )
    central = Settings(
        role="cluster",
        kubeconfig=str(kubeconfig),
        listen=f"{host}:{port + 1 if port else 0}",
        lease_namespace=cluster.CONTROLLER_NAMESPACE,
        identity="lbdoctor-demo",
        controller_log_interval_seconds=15,
    )
    stop = asyncio.Event()
    if exit_after is not None:
        asyncio.get_running_loop().call_later(exit_after, stop.set)
    ports: dict[str, int] = {}

    def ready(role: str) -> daemon.ReadyCallback:
        def announce(bound: int) -> None:
            ports[role] = bound
            if len(ports) == 2:
                print(_banner(ports, host, kubeconfig), flush=True)

        return announce

    roles = [
        asyncio.create_task(daemon.run(node, stop=stop, on_ready=ready("node"))),
        asyncio.create_task(daemon.run(central, stop=stop, on_ready=ready("cluster"))),
    ]
    try:
        # If one role cannot start (a busy port), stop the other too instead of running half a demo.
        await asyncio.wait(roles, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        return max(await asyncio.gather(*roles))
    finally:
        for app in apps:
            await app.stop()
        await api.stop()
