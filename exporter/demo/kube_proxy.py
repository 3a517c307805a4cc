"""The demo's kube-proxy (as root): its iptables rules in a network namespace of the demo's own, loaded with
the real ``iptables-restore``, and its ``/healthz``, ``/metrics`` and ``/proxyMode`` on loopback.

The rules are what kube-proxy in iptables mode programs for the demo's Services on the demo's node
(computed with lbdoctor's ``expected_state``, written in kube-proxy's own format: the chains, comments,
``statistic`` probabilities and DNATs of reference kube-proxy.md §1), with two faults seeded: kube-proxy
stopped syncing ten minutes before the demo started, so it never programmed Service ``inventory``
(created since) and it still sends Service ``checkout``'s traffic to the pod that has been crash-looping
since. Its ``/healthz`` says so (503), and its metrics show a sync queued after the last one that ran.

The node agent reads the rules as on a real node, through ``kube_proxy_command_prefix`` =
``ip netns exec <namespace>``. The namespace is deleted when the demo stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from exporter.dataplane import names
from exporter.dataplane.expected import ExpectedPort, expected_state
from exporter.demo import cluster
from exporter.kube import convert
from exporter.model.snapshot import ClusterSnapshot

MISSING_SERVICE = "inventory"  # created after kube-proxy stopped syncing: no rules at all
STALE_SERVICE = "checkout"  # its crash-looping pod is still an endpoint in the rules
STOPPED_SYNCING = 600.0  # seconds before the demo started
POD_CIDR = "10.244.0.0/16"  # what kube-proxy's --cluster-cidr would say (masquerade rules); not the demo's pods
MASQ = "0x4000"
TOOLS = ("ip", "iptables-restore")


def missing() -> str | None:
    """Why the demo cannot show kube-proxy's rules here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root to make a network namespace: sudo scripts/demo"
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install iproute2 iptables)"
    return None


def _comment(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _snapshot(net: str) -> ClusterSnapshot:
    services, slices, nodes = [], [], []
    for obj in cluster.objects(net):
        if obj["kind"] == "Service":
            services.append(convert.service(obj))
        elif obj["kind"] == "EndpointSlice":
            slices.append(convert.endpoint_slice(obj))
        elif obj["kind"] == "Node":
            nodes.append(convert.node(obj))
    return ClusterSnapshot.of(services=services, endpoint_slices=slices, nodes=nodes)


def _stale_endpoints(net: str) -> list[tuple[str, int]]:
    scenario = next(s for s in cluster.SCENARIOS if s.name == STALE_SERVICE)
    return [(f"{net}.{pod.host}", scenario.target_port) for pod in scenario.pods if pod.crash_looping]


def rules(net: str) -> str:
    """kube-proxy's ``iptables-restore`` input for the demo's node, with the two seeded faults."""
    state = expected_state(_snapshot(net), cluster.NODE)
    nat_chains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-PROXY-CANARY"]
    nat = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ}/{MASQ} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ}",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE '
        "--random-fully",
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ}",
    ]
    filter_chains = ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-FORWARD", "KUBE-PROXY-CANARY"]
    filters = [
        '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" '
        "-j KUBE-EXTERNAL-SERVICES",
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark {MASQ}/{MASQ} -j ACCEPT',
    ]
    for port in sorted(state.ports, key=lambda p: str(p.spn)):
        if port.spn.name == MISSING_SERVICE:
            continue
        extra = _stale_endpoints(net) if port.spn.name == STALE_SERVICE else []
        _service(port, extra, nat_chains, nat, filters)
    nat.append(
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in '
        'this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'
    )
    out = ["*nat", *(f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"))]
    out += [f":{c} - [0:0]" for c in dict.fromkeys(nat_chains)]
    out += [*nat, "COMMIT", "*filter", *(f":{c} ACCEPT [0:0]" for c in ("INPUT", "FORWARD", "OUTPUT"))]
    out += [f":{c} - [0:0]" for c in filter_chains]
    out += [*filters, "COMMIT"]
    # kubelet's hint chains: which backend kube-proxy writes to (the iptables wrapper looks for them).
    out += ["*mangle", ":KUBE-IPTABLES-HINT - [0:0]", ":KUBE-KUBELET-CANARY - [0:0]", "COMMIT"]
    return "\n".join(out) + "\n"


def _service(
    port: ExpectedPort, extra: list[tuple[str, int]], nat_chains: list[str], nat: list[str], filters: list[str]
) -> None:
    spn, proto = port.spn, port.spn.protocol
    cluster_set = sorted(port.cluster.required | set(extra))
    local_set = sorted(port.local.required)
    dport = f"-p {proto} -m {proto} --dport {port.port}"
    if not cluster_set and not local_set:
        filters.append(
            f"-A KUBE-SERVICES -d {port.cluster_ip}/32 -m comment --comment {_comment(f'{spn} has no endpoints')} "
            f"{dport} -j REJECT --reject-with icmp-port-unreachable"
        )
        if port.node_port is not None:
            filters.append(
                f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {_comment(f'{spn} has no endpoints')} -m addrtype "
                f"--dst-type LOCAL -p {proto} -m {proto} --dport {port.node_port} -j REJECT --reject-with "
                "icmp-port-unreachable"
            )
    else:
        svc = names.svc_chain(spn)
        comment = _comment(f"{spn} cluster IP")
        nat.append(f"-A KUBE-SERVICES -d {port.cluster_ip}/32 -m comment --comment {comment} {dport} -j {svc}")
        _policy(spn, svc, port, cluster_set, nat_chains, nat, masquerade=True)
        if port.node_port is not None:
            ext = names.ext_chain(spn)
            nat_chains.append(ext)
            node_port = f"-p {proto} -m {proto} --dport {port.node_port}"
            nat.append(f"-A KUBE-NODEPORTS -m comment --comment {_comment(str(spn))} {node_port} -j {ext}")
            if port.external_local:
                svl = names.svl_chain(spn)
                nat += [
                    f"-A {ext} -s {POD_CIDR} -m comment --comment "
                    f"{_comment(f'pod traffic for {spn} external destinations')} -j {svc}",
                    f"-A {ext} -m comment --comment "
                    f"{_comment(f'masquerade LOCAL traffic for {spn} external destinations')} "
                    "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
                    f"-A {ext} -m comment --comment {_comment(f'route LOCAL traffic for {spn} external destinations')} "
                    f"-m addrtype --src-type LOCAL -j {svc}",
                ]
                if local_set:
                    nat.append(f"-A {ext} -j {svl}")
                    _policy(spn, svl, port, local_set, nat_chains, nat, masquerade=False)
            else:
                nat += [
                    f"-A {ext} -m comment --comment {_comment(f'masquerade traffic for {spn} external destinations')} "
                    "-j KUBE-MARK-MASQ",
                    f"-A {ext} -j {svc}",
                ]
    if port.health_check_node_port is not None:
        filters.append(
            f"-A KUBE-NODEPORTS -m comment --comment {_comment(f'{spn} health check node port')} -p tcp -m tcp "
            f"--dport {port.health_check_node_port} -j ACCEPT"
        )


def _policy(
    spn: names.ServicePortName,
    chain: str,
    port: ExpectedPort,
    endpoints: Iterable[tuple[str, int]],
    nat_chains: list[str],
    nat: list[str],
    *,
    masquerade: bool,
) -> None:
    proto = spn.protocol
    nat_chains.append(chain)
    if masquerade:
        nat.append(
            f"-A {chain} ! -s {POD_CIDR} -d {port.cluster_ip}/32 -m comment --comment {_comment(f'{spn} cluster IP')} "
            f"-p {proto} -m {proto} --dport {port.port} -j KUBE-MARK-MASQ"
        )
    chosen = sorted(endpoints)
    for index, (ip, target_port) in enumerate(chosen):
        endpoint = names.join_host_port(ip, target_port)
        sep = names.sep_chain(spn, ip, target_port)
        left = len(chosen) - index
        statistic = f"-m statistic --mode random --probability {1.0 / left:0.10f} " if left > 1 else ""
        nat.append(f"-A {chain} -m comment --comment {_comment(f'{spn} -> {endpoint}')} {statistic}-j {sep}")
        if sep in nat_chains:
            continue
        nat_chains.append(sep)
        nat += [
            f"-A {sep} -s {ip}/32 -m comment --comment {_comment(str(spn))} -j KUBE-MARK-MASQ",
            f"-A {sep} -m comment --comment {_comment(str(spn))} -p {proto} -m {proto} -j DNAT "
            f"--to-destination {endpoint}",
        ]


def orphans(listing: str) -> list[str]:
    """Demo namespaces in ``ip netns list`` output whose process is gone."""
    found = []
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        pid = name.removeprefix("lbdoctor-demo-")
        if name.startswith("lbdoctor-demo-") and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            found.append(name)
    return found


class DemoKubeProxy:
    """The namespace with the rules, and kube-proxy's HTTP endpoints; ``settings`` for the node agent."""

    def __init__(self, net: str, started: float) -> None:
        self.net = net
        self.namespace = f"lbdoctor-demo-{os.getpid()}"
        self.stopped_at = started - STOPPED_SYNCING
        self._runner: web.AppRunner | None = None
        self._made = False
        self.port = 0
        self.host = f"{net}.0.1"

    @property
    def settings(self) -> dict[str, Any]:
        base = f"http://{self.host}:{self.port}"
        return {
            "kube_proxy_command_prefix": f"ip netns exec {self.namespace}",
            "kube_proxy_healthz_url": f"{base}/healthz",
            "kube_proxy_metrics_url": f"{base}/metrics",
            "kube_proxy_interval_seconds": 5.0,
            "kube_proxy_grace_seconds": 5.0,
        }

    async def start(self) -> None:
        await self._remove_orphans()
        await self._run("ip", "netns", "add", self.namespace)
        self._made = True
        await self._run("ip", "netns", "exec", self.namespace, "iptables-restore", text=rules(self.net))
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/proxyMode", self._mode)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._made:
            with contextlib.suppress(RuntimeError, OSError):
                await self._run("ip", "netns", "del", self.namespace)
            self._made = False

    async def _remove_orphans(self) -> None:
        """Namespaces of earlier demos that were killed before they could delete theirs (SIGKILL)."""
        process = await asyncio.create_subprocess_exec(
            "ip", "netns", "list", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        listing, _ = await asyncio.wait_for(process.communicate(), 30)
        for name in orphans(listing.decode(errors="replace")):
            with contextlib.suppress(RuntimeError, OSError, TimeoutError):
                await self._run("ip", "netns", "del", name)

    async def _run(self, *argv: str, text: str | None = None) -> None:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, error = await asyncio.wait_for(process.communicate(text.encode() if text else None), 60)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:5])} failed: {error.decode(errors='replace').strip()}")

    # kube-proxy's HTTP endpoints, as a kube-proxy that stopped syncing answers them ----------------------
    async def _healthz(self, _request: web.Request) -> web.Response:
        now = time.time()
        body = {
            "lastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.stopped_at)),
            "currentTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "nodeEligible": True,
        }
        return web.Response(status=503, text=json.dumps(body), content_type="application/json")

    async def _metrics(self, _request: web.Request) -> web.Response:
        last = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
        queued = "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"
        text = (
            f"# HELP {last} [ALPHA] The last time proxy rules were successfully synced.\n# TYPE {last} gauge\n"
            f'{last}{{ip_family="IPv4"}} {self.stopped_at:.9e}\n'
            f"# HELP {queued} [ALPHA] The last time a sync of proxy rules was queued.\n# TYPE {queued} gauge\n"
            f'{queued}{{ip_family="IPv4"}} {time.time() - 5:.9e}\n'
        )
        return web.Response(text=text)

    async def _mode(self, _request: web.Request) -> web.Response:
        return web.Response(text="iptables")
