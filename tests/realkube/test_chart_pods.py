"""The rendered chart's pods, started as the kubelet starts them, against the real API server.

Two releases (``lbdoctor``, the README's command, and ``ops`` in another namespace) are installed as
``helm install`` creates them: ServiceAccounts, ClusterRoles, Roles, bindings and Services from ``helm
template``. Every container runs as a real ``lbdoctor`` process with in-cluster configuration (the
pod's bound service-account token at the in-cluster path), under its securityContext, with a
read-only root filesystem (tests/realkube/pods.py), and must become ready with no request refused.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import next_ip
from tests.realkube.apps import App, deploy
from tests.realkube.cluster import RealCluster
from tests.realkube.conftest import Release, install, wait_for
from tests.realkube.pods import Node, PodProcess, register_node


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


def results(pod: PodProcess) -> dict[str, Any]:
    status, text = pod.get("/api/v1/results")
    assert status == 200, text
    document: dict[str, Any] = json.loads(text)
    return document


def errors(pod: PodProcess) -> list[str]:
    return [line for line in pod.get("/metrics")[1].splitlines() if line.startswith("lbdoctor_errors_total")]


def refusals(pod: PodProcess) -> list[str]:
    """Log lines about requests the API server refused, and tracebacks."""
    return [line for line in pod.log().splitlines() if re.search(r"forbidden|Unauthorized|Traceback|\b40[13]\b", line)]


def lease_holder(real: RealCluster, namespace: str, name: str = "lbdoctor-cluster") -> str:
    lease = real.admin.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
    return str(lease["spec"].get("holderIdentity") or "")


def assert_started_as_specified(release: Release, pod: PodProcess) -> None:
    """The process runs as its securityContext says, with the pod's volumes, in-cluster configuration,
    and nothing refused."""
    template = release.template("DaemonSet" if "-node-" in pod.name else "Deployment")
    security = template.container["securityContext"]
    status = status_of(pod.process.pid)
    mounts = mounts_of(pod.process.pid)
    if template.kind == "Deployment":  # runAsUser 65532, fsGroup 65532, no capabilities
        assert status["Uid"].split() == ["65532"] * 4 and status["Gid"].split() == ["65532"] * 4
        assert status["Groups"].split() == ["65532"]
        assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == int(status["CapBnd"], 16) == 0
    else:  # root with NET_ADMIN (12) and NET_RAW (13) only
        assert security["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
        assert status["Uid"].split() == ["0"] * 4
        assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == (1 << 12) | (1 << 13)
    assert status["NoNewPrivs"] == "1"  # allowPrivilegeEscalation: false
    assert mounts["/"].startswith("ro") and mounts["/tmp"].startswith("rw")  # readOnlyRootFilesystem + emptyDir
    assert mounts["/run/secrets/kubernetes.io/serviceaccount"].startswith("ro")  # /var/run is /run
    # In-cluster configuration: the token file and CA at the fixed paths, KUBERNETES_SERVICE_HOST/PORT.
    assert f"api_server=https://127.0.0.1:{release.cluster.port}" in pod.log() or (
        f'"api_server": "https://127.0.0.1:{release.cluster.port}"' in pod.log()
    )
    assert pod.metric("lbdoctor_errors_total") == 0, errors(pod)
    assert not refusals(pod), refusals(pod)
    assert pod.metric("lbdoctor_cache_synced") >= 7
    environment = environ_of(pod.process.pid)
    assert environment["KUBERNETES_PORT_443_TCP_PROTO"] == "tcp"  # the master Service's links, always given
    assert environment["HOSTNAME"] in (pod.name, release.node.name)


def environ_of(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().partition("=")[::2] for entry in entries if entry)


def test_every_container_becomes_ready_as_the_kubelet_starts_it(releases: dict[str, Release], app: App) -> None:
    started: list[tuple[Release, PodProcess]] = []
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
        pods = {p.name: p for r, p in started if r is release and "-node-" not in p.name}
        assert holder in pods
        assert not results(pods[holder])["standby"]
        (standby,) = [p for name, p in pods.items() if name != holder]
        assert results(standby)["standby"]
    # The crash of the first real install: the kubelet's service links for the release's Services.
    linked = releases["lbdoctor"].start("Deployment", service_links=True)
    linked.wait_ready(timeout=60)
    environment = environ_of(linked.process.pid)
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
    cluster_pods = [p for p in release.pods if "-node-" not in p.name]
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
