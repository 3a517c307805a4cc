"""The rendered chart's pods, started as the kubelet starts them, against the real API server.

Two releases (``lbdoctor``, the README's command, and ``ops`` in another namespace) are installed as
``helm install`` creates them: ServiceAccounts, ClusterRoles, Roles, bindings and Services from ``helm
template``. Every container of every pod runs as a real ``lbdoctor`` process with in-cluster
configuration (the pod's bound service-account token at the in-cluster path), under its securityContext,
with a read-only root filesystem and the pod's volumes (tests/realkube/pods.py): the node agent (user
65532, no capability) and its ``kube-proxy-rules`` sidecar (root with only NET_ADMIN and NET_RAW) share
the ``rules`` emptyDir. Each pod must become ready (every container's readiness probe) with no request
refused.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from exporter.dataplane.dump import DUMP, REQUEST, decode
from tests.conftest import next_ip
from tests.pki import make_pki
from tests.realkube.apps import App, deploy
from tests.realkube.cluster import RealCluster
from tests.realkube.conftest import Release, install, wait_for
from tests.realkube.pods import SA_MOUNT, Node, Pod, register_node
from tests.ship.test_helm import CHART


@pytest.fixture(scope="module", name="app")
def _app(real: RealCluster) -> App:
    node = Node("app-node-1", next_ip())
    register_node(real.admin, node)
    return deploy(real.admin, "shop", "web", node)


@pytest.fixture(scope="module", name="releases")
def _releases(real: RealCluster, workdir: Path, app: App) -> Iterator[dict[str, Release]]:
    releases = {
        "lbdoctor": install(real, "lbdoctor", "lbdoctor", workdir),
        "ops": install(real, "ops", "monitoring", workdir),
    }
    try:
        yield releases
    finally:
        for release in releases.values():
            release.stop_all()


@dataclass(frozen=True)
class Promise:
    """What the chart promises a container (issue 10: least privilege), written out here rather than
    derived from the securityContext the way the harness derives it."""

    uid: int
    groups: tuple[int, ...]
    capabilities: int  # the bit mask (linux/capability.h: CAP_NET_ADMIN 12, CAP_NET_RAW 13)


NET_ADMIN, NET_RAW = 1 << 12, 1 << 13
PROMISED = {
    ("Deployment", "lbdoctor"): Promise(65532, (65532,), 0),  # pod runAsUser/fsGroup 65532
    ("DaemonSet", "lbdoctor"): Promise(65532, (65532,), 0),  # the node agent: no capability at all
    ("DaemonSet", "kube-proxy-rules"): Promise(0, (0,), NET_ADMIN | NET_RAW),  # the rules sidecar only
}


def status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def mounts_of(pid: int) -> dict[str, str]:
    """mount point -> per-mount options, as the process sees them."""
    found = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        found[fields[4]] = fields[5]
    return found


def environ_of(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().partition("=")[::2] for entry in entries if entry)


def listening(pid: int) -> set[tuple[str, int]]:
    """The TCP addresses the process listens on: its own sockets (/proc/PID/fd) in the LISTEN state."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, size in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: TCP_LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, size, 4))  # host-order 32-bit words
            found.add((str(ipaddress.ip_address(raw)), int(port, 16)))
    return found


def results(pod: Pod) -> dict[str, Any]:
    status, text = pod.get("/api/v1/results")
    assert status == 200, text
    document: dict[str, Any] = json.loads(text)
    return document


def errors(pod: Pod) -> list[str]:
    return [line for line in pod.get("/metrics")[1].splitlines() if line.startswith("lbdoctor_errors_total")]


def refusals(log: str) -> list[str]:
    """Log lines about requests the API server refused, and tracebacks."""
    return [line for line in log.splitlines() if re.search(r"forbidden|Unauthorized|Traceback|\b40[13]\b", line)]


def lease_holder(real: RealCluster, namespace: str, name: str = "lbdoctor-cluster") -> str:
    lease = real.admin.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
    return str(lease["spec"].get("holderIdentity") or "")


def assert_started_as_specified(release: Release, pod: Pod) -> None:
    """Every container runs as the chart promises, with the pod's volumes shared between its containers,
    in-cluster configuration, and nothing refused."""
    kind = pod.template.kind
    assert [c.name for c in pod.containers] == [c["name"] for c in pod.template.containers]
    assert {c.name for c in pod.containers} == {name for k, name in PROMISED if k == kind}  # no container unchecked
    for container in pod.containers:
        promise = PROMISED[kind, container.name]
        status = status_of(container.pid)
        where = f"{pod.name}/{container.name}"
        assert status["Uid"].split() == [str(promise.uid)] * 4, where
        assert status["Gid"].split() == [str(promise.groups[0])] * 4, where
        assert tuple(map(int, status["Groups"].split())) == promise.groups, where
        assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == promise.capabilities, where
        assert int(status["CapBnd"], 16) == promise.capabilities, where  # nothing to gain back either
        assert int(status["CapInh"], 16) == int(status["CapAmb"], 16) == 0, where
        assert status["NoNewPrivs"] == "1", where  # allowPrivilegeEscalation: false
        mounts = mounts_of(container.pid)
        assert mounts["/"].startswith("ro"), where  # readOnlyRootFilesystem
        assert mounts[SA_MOUNT.replace("/var/run", "/run")].startswith("ro"), where  # /var/run is /run
        for mount in container.spec["volumeMounts"]:
            path = mount["mountPath"]
            assert mounts[path].startswith("ro" if mount.get("readOnly") else "rw"), (where, path)
            # The pod's volume itself, not a copy: the one directory on the node, seen through the
            # container's own mount namespace (/proc/PID/root).
            inside, node = os.stat(f"/proc/{container.pid}/root{path}"), os.stat(pod.volume(mount["name"]))
            assert (inside.st_dev, inside.st_ino) == (node.st_dev, node.st_ino), (where, path)
        assert listening(container.pid) == set(container.listen), where
        environment = environ_of(container.pid)
        assert environment["KUBERNETES_PORT_443_TCP_PROTO"] == "tcp"  # the master Service's links, always given
        assert environment["HOSTNAME"] in (pod.name, pod.node.name)
        assert not refusals(container.log()), refusals(container.log())
    # In-cluster configuration: the token file and CA at the fixed paths, KUBERNETES_SERVICE_HOST/PORT.
    assert f'"api_server": "https://127.0.0.1:{release.cluster.port}"' in pod.log() or (
        f"api_server=https://127.0.0.1:{release.cluster.port}" in pod.log()
    )
    assert pod.metric("lbdoctor_errors_total") == 0, errors(pod)
    assert pod.metric("lbdoctor_cache_synced") >= 7
    if kind == "DaemonSet":
        assert_the_agent_and_its_sidecar(pod)
    else:  # a pod of its own network: 0.0.0.0:9850 in the chart, the pod IP here
        assert pod.main.listen == ((pod.ip, 9850),)


def assert_the_agent_and_its_sidecar(pod: Pod) -> None:
    """The node agent serves on its node's address and the node's 127.0.0.1 only; the sidecar dumps the
    node's rules, by reading them only, into the shared emptyDir, and its readiness command passes; the
    agent, another user in another mount namespace, asks there and reads the dump."""
    agent, sidecar = pod.container("lbdoctor"), pod.container("kube-proxy-rules")
    listen = {item["name"]: item.get("value") for item in agent.spec["env"]}["LBDOCTOR_LISTEN"]
    assert listen == "[$(HOST_IP)]:9850,127.0.0.1:9850"  # the chart's form (tests/realkube/pods.py maps it)
    assert agent.env["LBDOCTOR_LISTEN"] == f"[{pod.node.ip}]:9850,{pod.node.localhost}:9850"
    assert set(agent.listen) == {(pod.node.ip, 9850), (pod.node.localhost, 9850)} and not sidecar.listen
    assert pod.get("/healthz", host=pod.node.localhost)[0] == 200
    assert agent.env["LBDOCTOR_KUBE_PROXY_RULES_DIR"] == "/run/lbdoctor/rules"
    assert sidecar.spec["args"][:3] == ["dump-rules", "--dir", "/run/lbdoctor/rules"]
    passed, said = pod.probe(sidecar)  # the kubelet's exec readiness probe: `lbdoctor dump-rules --check`
    assert passed, said
    rules = pod.volume("rules")
    dump = rules / DUMP
    assert (dump.stat().st_uid, dump.stat().st_mode & 0o777) == (0, 0o644)  # written by the root sidecar
    _, written_at, interval = decode(dump.read_bytes())
    assert interval == 30 and time.time() - written_at < 2 * interval + 30
    header = json.loads(dump.read_bytes().partition(b"\n")[0])
    assert header["commands"], header
    assert all(
        re.match(r"(iptables(-nft|-legacy)?-save|ip6tables(-nft|-legacy)?-save|nft -j list) ", c + " ")
        for c in header["commands"]
    ), header["commands"]
    request = wait_for(lambda: (rules / REQUEST).exists() and rules / REQUEST, "the agent's request.json")
    assert request.stat().st_uid == 65532  # written by the unprivileged agent, read by the root sidecar

    def kube_proxy() -> dict[str, Any] | None:
        return next((r for r in results(pod)["results"] if r["check"] == "kube_proxy"), None)

    found = wait_for(kube_proxy, "the agent's kube_proxy result")
    assert found["reason"] != "KubeProxyRulesUnreadable", found


def test_every_container_becomes_ready_as_the_kubelet_starts_it(releases: dict[str, Release], app: App) -> None:
    started: list[tuple[Release, Pod]] = []
    # The cluster role's two replicas first, then the node agent (whose first read of the cluster role's
    # Service would otherwise meet a cluster role still electing its leader, and count an error).
    for kinds in (("Deployment", "Deployment"), ("DaemonSet",)):
        batch = [(release, release.start(kind)) for release in releases.values() for kind in kinds]
        for _release, pod in batch:
            pod.wait_ready(timeout=90)
        for release in releases.values():
            wait_for(lambda r=release: lease_holder(r.cluster, r.namespace), "a leader", timeout=20)
        started += batch
    for release, pod in started:
        assert_started_as_specified(release, pod)
    # One replica of each release leads, through a real Lease in its namespace.
    for release in releases.values():
        holder = wait_for(lambda r=release: lease_holder(r.cluster, r.namespace), "a leader", timeout=20)
        pods = {p.name: p for r, p in started if r is release and p.template.kind == "Deployment"}
        assert holder in pods
        assert not results(pods[holder])["standby"]
        (standby,) = [p for name, p in pods.items() if name != holder]
        assert results(standby)["standby"]
    # The crash of the first real install: the kubelet's service links for the release's Services.
    linked = releases["lbdoctor"].start("Deployment", service_links=True)
    linked.wait_ready(timeout=60)
    environment = environ_of(linked.main.pid)
    assert environment["LBDOCTOR_CLUSTER_PORT"].startswith("tcp://10.100.")  # the cluster IP the API server gave
    assert "LBDOCTOR_CLUSTER_SERVICE_PORT_HTTP_METRICS" in environment
    assert_started_as_specified(releases["lbdoctor"], linked)


def test_the_leader_checks_the_shop_through_the_real_api(releases: dict[str, Release], app: App) -> None:
    release = releases["lbdoctor"]
    holder = lease_holder(release.cluster, release.namespace)
    leader = next(p for p in release.pods if p.name == holder)

    def endpoints_ok() -> bool:
        found = [
            r
            for r in results(leader)["results"]
            if r["check"] == "endpoints" and r["object"]["namespace"] == "shop" and r["object"]["name"] == app.service
        ]
        return bool(found) and found[0]["status"] == "ok"

    wait_for(endpoints_ok, "the leader's endpoints result for shop/web", timeout=30)


def test_a_node_agent_sent_to_the_standby_gets_the_leaders_targetgroups(
    releases: dict[str, Release], real: RealCluster
) -> None:
    """The chart's Service balances over both cluster-role replicas; the standby relays the leader."""
    release = releases["lbdoctor"]
    holder = lease_holder(real, release.namespace)
    cluster_pods = [p for p in release.pods if p.template.kind == "Deployment"]
    standby = next(p for p in cluster_pods if p.name != holder)
    status, body = standby.get("/api/v1/targetgroups")
    assert status == 200, body
    document = json.loads(body)
    assert document["schema"] == "lbdoctor.targetgroups/v1" and document["target_groups"] == []  # no AWS here
    # A node agent whose cluster_role_url (the chart's lbdoctor-cluster.lbdoctor.svc) leads to the standby.
    service = "lbdoctor-cluster.lbdoctor.svc"
    agent = release.start(
        "DaemonSet",
        node=release.new_node(),
        hosts={service: standby.ip},
        env={"LBDOCTOR_TARGETGROUPS_INTERVAL_SECONDS": "5"},
    )
    agent.wait_ready(timeout=60)
    wait_for(lambda: "read the target-group settings the cluster role publishes" in agent.log(), "the agent's read")
    time.sleep(6)  # a second read as well
    assert agent.metric("lbdoctor_errors_total", component="agents") == 0, agent.get("/metrics")[1]
    assert standby.metric("lbdoctor_errors_total") == 0


def test_the_hardened_web_face_as_the_chart_mounts_it(real: RealCluster, workdir: Path, tmp_path: Path) -> None:
    """The chart with helm/lbdoctor/ci/hardened-web-values.yaml: the web config, the certificates and the
    peer password come from Secrets, as volumes the kubelet writes (read-only, mount points the image
    lacks). Both roles serve TLS with basic auth; the kubelet's https probes pass without credentials;
    each role reads the other's API over TLS, verified against the Secret's CA by the certificate's name,
    as the peer user with the password from its Secret."""
    pki = make_pki(tmp_path / "pki")
    cert, key = pki.issue("lbdoctor", "DNS:lbdoctor.lbdoctor.svc")  # web.peer.serverName
    password = secrets.token_urlsafe(18)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    release = install(
        real,
        "secure",
        "secure",
        workdir,
        values=(CHART / "ci" / "hardened-web-values.yaml",),
        # No ServiceMonitor CRD here; the peer user's hash for this test's password (the file's is an example).
        sets=("prometheus.serviceMonitor.enabled=false", f"web.config.basic_auth_users.lbdoctor={hashed}"),
    )
    for name, data in (
        ("lbdoctor-tls", {"tls.crt": cert.read_bytes(), "tls.key": key.read_bytes(), "ca.crt": pki.ca.read_bytes()}),
        ("lbdoctor-peer", {"password": password.encode()}),
    ):
        encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
        real.admin.apply(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "secure"}, "data": encoded}
        )
    try:
        cluster_role = release.start("Deployment")
        cluster_role.wait_ready(timeout=90)  # httpGet https /readyz, no credentials
        agent = release.start("DaemonSet")
        agent.wait_ready(timeout=90)
        for pod in (cluster_role, agent):
            pod.auth = ("lbdoctor", password)
            started = next(json.loads(line) for line in pod.log().splitlines() if '"lbdoctor started"' in line)
            assert started["tls"] is True and started["basic_auth"] is True, started
            mounts = mounts_of(pod.main.pid)
            assert all(mounts[f"/etc/lbdoctor/{name}"].startswith("ro") for name in ("web", "tls", "peer"))
        wait_for(
            lambda: "read the target-group settings the cluster role publishes" in agent.log(),
            "the agent's read of the cluster role's API over TLS with basic auth",
            timeout=60,
        )
        for pod in (cluster_role, agent):
            assert_started_as_specified(release, pod)  # no error counted: the peer reads succeeded
            assert pod.get("/metrics", auth=("lbdoctor", "wrong"))[0] == 401
            assert pod.get("/readyz", auth=("lbdoctor", "wrong"))[0] == 200  # the kubelet's probes need none
        assert not Path("/etc/lbdoctor").exists()  # the mount points were made in an overlay, not on the host
    finally:
        release.stop_all()
