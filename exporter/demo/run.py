"""``lbdoctor demo``: fake API server + loopback apps + the node and cluster roles, in one process.

With the demo extra installed, the cluster role also reads the demo's AWS (moto on loopback,
exporter/demo/aws.py) exactly as it reads AWS; as root, the node agent also reads kube-proxy's rules
from a network namespace of the demo's own (exporter/demo/kube_proxy.py). Without either, the banner
says how to see it.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from exporter import daemon
from exporter.demo import aws as demo_aws
from exporter.demo import cluster
from exporter.demo import kube_proxy as demo_kube_proxy
from exporter.demo.apps import App
from exporter.fakeapi import ClusterState, FakeApiServer
from exporter.settings import Settings, parse_listen


def _found(scenario: cluster.Scenario) -> str:
    found = []
    if scenario.expect_check and scenario.expect_reason:
        found.append(f"{scenario.expect_check}: {scenario.expect_reason}")
    if scenario.cluster_check and (scenario.cluster_check, scenario.cluster_reason) != (
        scenario.expect_check,
        scenario.expect_reason,
    ):
        found.append(f"{scenario.cluster_check}: {scenario.cluster_reason}")
    return "; ".join(found) or "healthy"


def _banner(
    ports: dict[str, int], host: str, kubeconfig: Path, aws: demo_aws.DemoAws | None, aws_missing: str | None,
    kube_proxy: demo_kube_proxy.DemoKubeProxy | None, kube_proxy_missing: str | None,
) -> str:  # fmt: skip
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    node, central = f"http://{shown}:{ports['node']}", f"http://{shown}:{ports['cluster']}"
    aws_env = ""
    if aws is not None:
        aws_env = f"AWS_ENDPOINT_URL={aws.url} AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo "
    cluster_name = f" --cluster-name {demo_aws.CLUSTER_NAME} --region {demo_aws.REGION}" if aws is not None else ""
    lines = [
        "",
        "lbdoctor demo: a simulated EKS cluster is running, with lbdoctor's node agent and cluster role watching it.",
        f"  node agent    status page {node}/   metrics {node}/metrics   API {node}/api/v1/results",
        f"  cluster role  status page {central}/   metrics {central}/metrics   API {central}/api/v1/results"
        "   (every node agent's probes too)",
        f"  kubeconfig    {kubeconfig}  (the fake API server)",
        f"  try           {aws_env}lbdoctor diagnose --kubeconfig {kubeconfig}{cluster_name} -A",
    ]
    if aws is not None:
        lines.append(
            f"  AWS           {aws.url}  (moto: the VPC, load balancers and target groups of cluster "
            f"{demo_aws.CLUSTER_NAME})"
        )
    if kube_proxy is not None:
        lines.append(
            f"  kube-proxy    rules in network namespace {kube_proxy.namespace}: "
            f"ip netns exec {kube_proxy.namespace} iptables-save"
        )
    lines += ["", "Load-balanced services in namespace 'shop' and what lbdoctor should find:"]
    for scenario in cluster.SCENARIOS:
        via = {"gateway": "[Gateway API] ", "auto-mode": "[EKS Auto Mode] "}.get(scenario.front, "")
        lines.append(f"  {scenario.lb.upper()} {scenario.name:<16} {via}{scenario.case}  ->  {_found(scenario)}")
    lines.append(
        f"  and the AWS Load Balancer Controller in {cluster.CONTROLLER_NAMESPACE}: its logs show AccessDenied for "
        f"{cluster.CONTROLLER_DENIED_ACTION}  ->  controller: ControllerAccessDenied"
    )
    lines += [
        "",
        "What the load balancers say (the cluster role asks the demo's AWS, correlating with the node's probes):",
    ]
    if aws is None:
        lines.append(f"  not shown: {aws_missing}")
    else:
        for scenario in cluster.SCENARIOS:
            if scenario.aws or scenario.aws_case:
                found = "; ".join(f"{check}: {reason}" for check, reason in scenario.aws) or "no load balancer"
                lines.append(f"  {scenario.lb.upper()} {scenario.name:<16} {scenario.aws_case}  ->  {found}")
        lines.append(
            f"  TGB {demo_aws.PARTNER:<16} a console user deletes the partner's target group once lbdoctor has seen "
            "it; the controller fails to reconcile the binding  ->  elb_target_health: TargetGroupNotFound; "
            "controller: ReconcileFailed"
        )
        lines.append(
            "  every other target the LB reports healthy; where the LB says unhealthy and our probe from the node "
            "says healthy, the message names the network path (reviews, ledger)"
        )
    lines += ["", "What kube-proxy programmed on the node (the node agent reads its rules):"]
    if kube_proxy is None:
        lines.append(f"  not shown: {kube_proxy_missing}")
    else:
        lines += [
            f"  kube-proxy stopped syncing {demo_kube_proxy.STOPPED_SYNCING / 60:.0f} minutes ago  ->  kube_proxy: "
            "KubeProxyUnhealthy, KubeProxySyncStale (Node)",
            f"  {demo_kube_proxy.MISSING_SERVICE}: created since, so it has no rules  ->  "
            "kube_proxy: ServiceRulesMissing",
            f"  {demo_kube_proxy.STALE_SERVICE}: its crash-looping pod is still an endpoint in the rules  ->  "
            "kube_proxy: StaleEndpointRules",
        ]
    lines += [
        "",
        "Results settle within about 30-60 s (probes and the load balancers follow each target group's interval). "
        "Ctrl-C stops.",
        "",
    ]
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


async def _seen_by(base: str, name: str) -> bool:
    """Whether the cluster role's published AWS round holds the target group ``name``."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}/api/v1/targetgroups", timeout=aiohttp.ClientTimeout(total=5)) as response,
        ):
            if response.status != 200:
                return False
            document = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False
    return any(group.get("target_group") == name for group in document.get("target_groups", []))


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
    started = time.time()
    created = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    state = ClusterState()
    api = FakeApiServer(state, bookmark_interval=30.0)
    aws: demo_aws.DemoAws | None = None
    kube_proxy: demo_kube_proxy.DemoKubeProxy | None = None
    aws_missing, kube_proxy_missing = demo_aws.missing(), demo_kube_proxy.missing()
    roles: list[asyncio.Task[int]] = []
    stop = asyncio.Event()
    try:
        if aws_missing is None:
            aws = demo_aws.DemoAws(net, state, started)
            await aws.start()
            os.environ.update(aws.environment)  # the cluster role's boto3 reads these, as it would in a pod
        if kube_proxy_missing is None:
            kube_proxy = demo_kube_proxy.DemoKubeProxy(net, started)
            try:
                await kube_proxy.start()
            except (RuntimeError, OSError, TimeoutError) as failure:
                await kube_proxy.stop()
                kube_proxy, kube_proxy_missing = None, f"could not load the rules: {failure}"
        cluster.seed(state, net, created, aws.instances if aws is not None else None)
        await api.start()
        workdir = Path(tempfile.mkdtemp(prefix="lbdoctor-demo-"))
        kubeconfig = api.write_kubeconfig(workdir / "kubeconfig")
        if exit_after is not None:
            asyncio.get_running_loop().call_later(exit_after, stop.set)
        ports: dict[str, int] = {}
        ready: dict[str, asyncio.Future[int]] = {
            r: asyncio.get_running_loop().create_future() for r in ("node", "cluster")
        }

        def announce(role: str) -> daemon.ReadyCallback:
            def bound(number: int) -> None:
                ports[role] = number
                if not ready[role].done():
                    ready[role].set_result(number)

            return bound

        # The simulated node has no kube-proxy forwarding its NodePorts, so instance targets are probed at
        # their pods only. Without the demo's kube-proxy namespace, its kube_proxy check says "unknown" and why.
        node_extra: dict[str, Any] = kube_proxy.settings if kube_proxy is not None else {}
        node = Settings(
            role="node",
            node_name=cluster.NODE,
            kubeconfig=str(kubeconfig),
            listen=listen,
            probe_node_path=False,
            **node_extra,
        )
        roles.append(asyncio.create_task(daemon.run(node, stop=stop, on_ready=announce("node"))))
        if not await _first(ready["node"], roles[0]):
            return await roles[0]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        # The node agent as the chart runs it: a pod of the DaemonSet, host network, so the cluster role finds it
        # by owner and reads its probes (the one pane), each agent for its own node.
        state.apply(cluster.node_agent_pod(shown, created))
        central_extra: dict[str, Any] = {}
        if aws is not None:
            central_extra = {
                "cluster_name": demo_aws.CLUSTER_NAME,
                "aws_region": demo_aws.REGION,
                "aws_cloudwatch": "on",  # the demo shows the change detector; it costs nothing here
            }
        central = Settings(
            role="cluster",
            kubeconfig=str(kubeconfig),
            listen=f"{host}:{port + 1 if port else 0}",
            lease_namespace=cluster.CONTROLLER_NAMESPACE,
            identity="lbdoctor-demo",
            controller_log_interval_seconds=15,
            node_agent_daemonset=cluster.NODE_AGENT_DAEMONSET,
            node_agent_namespace=cluster.LBDOCTOR_NAMESPACE,
            node_agent_port=ports["node"],
            **central_extra,
        )
        roles.append(asyncio.create_task(daemon.run(central, stop=stop, on_ready=announce("cluster"))))
        if not await _first(ready["cluster"], roles[1]):
            stop.set()
            return max(await asyncio.gather(*roles))
        # Its Service and Endpoints: lbdoctor diagnose finds it by the chart's labels and reads it through the
        # API server's service proxy.
        for obj in cluster.cluster_role_objects(shown, ports["cluster"], created):
            state.apply(obj)
        if aws is not None:
            base = f"http://{shown}:{ports['cluster']}"
            aws.watch_partner(lambda: _seen_by(base, demo_aws.PARTNER))
        print(_banner(ports, host, kubeconfig, aws, aws_missing, kube_proxy, kube_proxy_missing), flush=True)
        # If one role stops (a failure), stop the other too instead of running half a demo.
        await asyncio.wait(roles, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        return max(await asyncio.gather(*roles))
    finally:
        stop.set()
        for task in roles:
            if not task.done():
                await asyncio.wait([task], timeout=10)
        if aws is not None:
            await aws.stop()
        if kube_proxy is not None:
            await kube_proxy.stop()
        for app in apps:
            await app.stop()
        await api.stop()


async def _first(ready: asyncio.Future[int], role: asyncio.Task[int]) -> bool:
    """Wait until the role serves (True) or stops first, e.g. on a busy port (False)."""
    await asyncio.wait([ready, role], return_when=asyncio.FIRST_COMPLETED)
    return ready.done()
