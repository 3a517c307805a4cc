"""Bad permissions and faults of the real API server: each is reported (a finding, or a counted error with
the resource and verb in the log) and the daemon keeps serving.

- a rule missing from the ClusterRole (``list endpointslices`` refused) and the controller's Role unbound;
- the Lease's Role missing: the replica can never lead, and says so (not a silent standby);
- the TargetGroupBinding CRD missing while the controller's Deployment exists;
- the service-account token revoked (its pod deleted), then the API server restarted: every request
  answers 401 until the kubelet writes a new token, which the daemon reads at once.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.realkube.apps import nlb_service
from tests.realkube.cluster import ApiFailure, RealCluster
from tests.realkube.conftest import CRD, Release, install, install_crd, wait_for
from tests.realkube.pods import Pod
from tests.realkube.test_chart_pods import lease_holder, results


@pytest.fixture(scope="module", name="cut")
def _cut(real: RealCluster, workdir: Path) -> Iterator[Release]:
    release = install(real, "cut", "cut", workdir)
    real.admin.namespace("cut-app")
    real.admin.apply(nlb_service("cut-app", "api", 8080))
    try:
        yield release
    finally:
        release.stop_all()


def log_events(pod: Pod) -> list[dict[str, Any]]:
    events = []
    for line in pod.log().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def test_a_rule_missing_from_the_cluster_role_is_reported(cut: Release, real: RealCluster) -> None:
    role = cut.doc("ClusterRole", "-cluster")
    rules = [r for r in role["rules"] if "endpointslices" not in r["resources"]]
    assert len(rules) == len(role["rules"]) - 1
    real.admin.apply({**role, "rules": rules})
    # ... and the Role in the controller's namespace (its Deployment, its logs) not bound at all.
    binding = cut.doc("RoleBinding", "-controller")
    real.admin.delete(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings/{binding['metadata']['name']}"
    )
    try:
        pod = cut.start("Deployment")
        pod.wait_ready(timeout=90)  # what it cannot list it reports, and it is ready with the rest

        def endpoints_result() -> dict[str, Any] | None:
            return next(
                (r for r in results(pod)["results"] if r["check"] == "endpoints" and r["object"]["name"] == "api"),
                None,
            )

        found = wait_for(endpoints_result, "the endpoints result of cut-app/api")
        assert found["status"] == "unknown" and found["reason"] == "Forbidden"
        assert "RBAC forbids listing endpointslices" in found["message"]
        controller = next(r for r in results(pod)["results"] if r["check"] == "controller")
        assert (controller["status"], controller["reason"]) == ("unknown", "Forbidden")
        assert "RBAC forbids listing deployments" in controller["message"]
        assert pod.metric("lbdoctor_errors_total", component="kube", kind="forbidden") == 2  # once per resource
        warnings = {e["resource"]: e for e in log_events(pod) if e["event"].startswith("not allowed to list")}
        assert set(warnings) == {"endpointslices", "deployments"}
        assert all(e["verb"] == "list" and e["level"] == "warning" for e in warnings.values())
        assert 'cannot list resource "endpointslices"' in warnings["endpointslices"]["error"]  # the API's words
        assert 'in the namespace "kube-system"' in warnings["deployments"]["error"]
        assert pod.metric("lbdoctor_cache_synced", resource="endpointslices") == 1
        assert pod.alive() and pod.get("/healthz")[0] == 200
    finally:
        real.admin.apply(role)
        real.admin.apply(binding)
        cut.stop_all()


def test_a_lease_it_may_not_touch_is_reported_loudly(cut: Release, real: RealCluster) -> None:
    binding = cut.doc("RoleBinding", "-leader-election")
    real.admin.delete(f"/apis/rbac.authorization.k8s.io/v1/namespaces/cut/rolebindings/{binding['metadata']['name']}")
    try:
        pod = cut.start("Deployment")
        pod.wait_ready(timeout=90)
        wait_for(
            lambda: pod.metric("lbdoctor_errors_total", component="leader", kind="forbidden") >= 2,
            "Lease refusals to be counted",
        )
        (warning,) = [e for e in log_events(pod) if e["event"].startswith("cannot take part in leader election")]
        assert warning["level"] == "warning" and warning["lease"] == "cut/lbdoctor-cluster"
        assert 'cannot get resource "leases"' in warning["error"]
        assert results(pod)["standby"] and pod.alive()
    finally:
        real.admin.apply(binding)
        cut.stop_all()


def test_a_missing_target_group_binding_crd_is_a_finding(cut: Release, real: RealCluster) -> None:
    controller = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "aws-load-balancer-controller", "namespace": "kube-system"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "aws-load-balancer-controller"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "aws-load-balancer-controller"}},
                "spec": {
                    "containers": [
                        {"name": "controller", "image": "public.ecr.aws/eks/aws-load-balancer-controller:v2.13.0"}
                    ]
                },
            },
        },
    }
    crd_name = yaml.safe_load(CRD.read_text())["metadata"]["name"]
    real.admin.apply(controller)
    real.admin.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd_name}")
    try:
        wait_for(
            lambda: isinstance(_status(real, "/apis/elbv2.k8s.aws/v1beta1/targetgroupbindings"), int),
            "the CRD to be gone",
        )
        pod = cut.start("Deployment")
        pod.wait_ready(timeout=90)
        wait_for(lambda: lease_holder(real, "cut") == pod.name, "it to lead")

        def crd_finding() -> dict[str, Any] | None:
            return next((r for r in results(pod)["results"] if r.get("reason") == "TargetGroupBindingCrdMissing"), None)

        found = wait_for(crd_finding, "the TargetGroupBindingCrdMissing finding")
        assert found["check"] == "controller" and found["status"] == "fail"
        assert found["object"] == {
            "kind": "Deployment",
            "namespace": "kube-system",
            "name": "aws-load-balancer-controller",
        }
        skipped = {e["resource"] for e in log_events(pod) if e["event"] == "resource not served; skipping it"}
        assert "targetgroupbindings" in skipped  # (with the front ends' CRDs this cluster does not have either)
        assert pod.metric("lbdoctor_errors_total") == 0  # an absent CRD is not lbdoctor's error
    finally:
        cut.stop_all()
        real.admin.delete("/apis/apps/v1/namespaces/kube-system/deployments/aws-load-balancer-controller")
        install_crd(real)


def _status(real: RealCluster, path: str) -> int | None:
    try:
        real.admin.get(path)
    except ApiFailure as failure:
        return failure.status
    return None


def test_a_revoked_token_and_an_api_server_restart(cut: Release, real: RealCluster) -> None:
    pod = cut.start("Deployment")
    pod.wait_ready(timeout=90)
    wait_for(lambda: lease_holder(real, "cut") == pod.name, "it to lead")
    # The pod's token is bound to its Pod object: deleting the pod (at once, no kubelet confirms) revokes
    # it. The API server caches token reviews for 10 s; its restart also cuts every watch.
    real.admin.request("DELETE", f"/api/v1/namespaces/cut/pods/{pod.name}", query={"gracePeriodSeconds": "0"})
    real.restart_apiserver()
    assert pod.get("/healthz")[0] == 200
    wait_for(
        lambda: (
            pod.metric("lbdoctor_errors_total", component="leader", kind="unauthorized") >= 1
            and pod.metric("lbdoctor_errors_total", component="kube", kind="unauthorized") >= 1
        ),
        "the Lease renewal's and the watches' 401s to be counted",
    )
    refused = [e for e in log_events(pod) if e["event"].startswith("the API server rejected lbdoctor's credentials")]
    assert refused and {e["verb"] for e in refused} <= {"list", "watch"}
    assert {e["resource"] for e in refused} <= {
        "pods",
        "node_agents",  # lbdoctor's own node agents' pods, which the cluster role reads the probes of
        "services",
        "endpointslices",
        "ingresses",
        "ingressclasses",
        "targetgroupbindings",
        "nodes",
        "deployments",
        "events",
    }
    assert all(e["level"] == "warning" for e in refused)
    assert pod.alive() and pod.get("/healthz")[0] == 200
    # The kubelet writes a new token (here: for the pod, made again); the daemon reads it after the 401.
    real.admin.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "rotated", "namespace": "cut"}})
    secret = real.admin.get("/api/v1/namespaces/cut/secrets/rotated")
    token = real.admin.token(
        "cut",
        "cut-lbdoctor-cluster",
        bound={"apiVersion": "v1", "kind": "Secret", "name": "rotated", "uid": secret["metadata"]["uid"]},
    )
    (pod.directory / "serviceaccount" / "token").write_text(token)
    # Recovered: a Service created now shows in its results (its watches run again, it leads again).
    real.admin.apply(nlb_service("cut-app", "after-restart", 8080, selector={"app": "nothing-matches"}))

    def sees_new_service() -> bool:
        return any(r["object"]["name"] == "after-restart" and r["check"] == "selector" for r in results(pod)["results"])

    wait_for(sees_new_service, "the recovered daemon to see a new Service", timeout=60)
    counted = pod.metric("lbdoctor_errors_total", component="kube", kind="unauthorized")
    time.sleep(3)
    assert pod.metric("lbdoctor_errors_total", component="kube", kind="unauthorized") == counted  # no more 401s
    assert pod.alive() and re.search(r"Traceback", pod.log()) is None
