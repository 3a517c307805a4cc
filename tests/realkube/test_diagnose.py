"""``lbdoctor diagnose`` as a person with read-only access runs it: a kubeconfig whose user (a client
certificate, as an SSO role maps to) holds only the built-in ``view`` ClusterRole. It must run the
runbook over what ``view`` shows and say what it could not look at, never stop on a 403."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.realkube.apps import deploy, nlb_service
from tests.realkube.cluster import RealCluster
from tests.realkube.pods import Node, register_node


def test_diagnose_with_only_the_view_cluster_role(real: RealCluster) -> None:
    node = Node("viewer-node-1", "192.0.2.200")
    register_node(real.admin, node)
    deploy(real.admin, "viewer-shop", "web", node)
    # Instance targets behind externalTrafficPolicy Local: the traffic_policy step needs the nodes.
    local = nlb_service("viewer-shop", "local", 8080, externalTrafficPolicy="Local", selector={"app": "web"})
    local["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] = "instance"
    real.admin.apply(local)
    real.admin.apply(nlb_service("viewer-shop", "orphan", 8080, selector={"app": "nothing"}))
    kubeconfig = real.user_kubeconfig("jane@example.com")
    real.admin.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "jane-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane@example.com"}],
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "diagnose", "--kubeconfig", str(kubeconfig), "-A", "-o", "json", "--no-aws"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr
    assert done.returncode == 1, done.stdout[-3000:]  # a check fails (the orphan's selector): not 3, not 2
    diagnosis = json.loads(done.stdout)
    results = diagnosis["results"]

    def find(check: str, name: str) -> dict[str, object]:
        (found,) = [
            r
            for r in results
            if r["check"] == check and r["object"] == {"kind": "Service", "namespace": "viewer-shop", "name": name}
        ]
        return found

    # What view shows is checked: the orphan Service's selector matches no pod; web's endpoints are ready.
    assert find("selector", "orphan")["reason"] == "NoPodsMatchSelector"
    assert find("endpoints", "web")["status"] == "ok"
    # What view hides (nodes are cluster-scoped) is said, not guessed.
    policy = find("traffic_policy", "local")
    assert (policy["status"], policy["reason"]) == ("unknown", "Forbidden")
    assert "RBAC forbids listing nodes" in str(policy["message"])
    # ... and listed once, with the table's own words for it.
    assert diagnosis["unreadable"] == {
        "ingressclasses": "RBAC forbids listing ingressclasses",
        "nodes": "RBAC forbids listing nodes",
        "targetgroupbindings": "RBAC forbids listing targetgroupbindings",
    }
    table = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "diagnose",
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            "viewer-shop",
            "--no-aws",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 1 and "Traceback" not in table.stderr
    assert "Not allowed to list ingressclasses, nodes, targetgroupbindings (RBAC)" in " ".join(table.stdout.split())
