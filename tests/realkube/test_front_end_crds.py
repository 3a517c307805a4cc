"""The front ends against the real kube-apiserver: the Gateway API's, the controller's and EKS Auto Mode's CRDs
installed as documented (manifests/), the demo's front-end objects created through the API (validated and
defaulted by it), then lbdoctor lists and watches them as it does on a cluster."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import diagnose
from exporter.demo import cluster as demo
from exporter.kube import resources
from exporter.kube.client import ApiError, KubeClient
from exporter.kube.store import Store
from exporter.kube.watch import Reflector
from tests.realkube.cluster import ApiFailure, RealCluster
from tests.realkube.conftest import wait_for

MANIFESTS = Path(__file__).resolve().parent / "manifests"
NAMESPACE = "front-ends"  # the demo's objects, moved out of the namespaces other tests use


class Telemetry:
    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def watch_started(self, resource: str) -> None:
        pass

    def watch_restarted(self, resource: str, reason: str) -> None:
        pass

    def error(self, component: str, kind: str) -> None:
        self.errors.append((component, kind))


def install(real: RealCluster, manifest: str) -> None:
    for crd in yaml.safe_load_all((MANIFESTS / manifest).read_text()):
        real.admin.apply(crd)
        name = crd["metadata"]["name"]

        def established(name: str = name) -> bool:
            found = real.admin.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conditions = (found.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_for(established, f"CRD {name} to be established")


def front_end_objects() -> list[dict[str, Any]]:
    """The demo's Services, Ingresses, IngressClasses and Gateway API objects, in their own namespace, with the
    ports and addresses the API server assigns (not the demo's fixed ones, which other tests may hold)."""
    found = []
    for obj in demo.objects("127.77"):
        if obj["kind"] in ("Namespace", "Node", "Pod", "EndpointSlice", "Deployment"):
            continue
        obj = copy.deepcopy(obj)
        if obj["metadata"].get("namespace") == demo.NAMESPACE:
            obj["metadata"]["namespace"] = NAMESPACE
        if obj["kind"] == "Service":
            for key in ("clusterIP", "healthCheckNodePort"):
                obj["spec"].pop(key, None)
            for port in obj["spec"]["ports"]:
                port.pop("nodePort", None)
        found.append(obj)
    return found


async def run_diagnose(kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    options = diagnose.Options(kubeconfig=str(kubeconfig), namespace=NAMESPACE, output="json", aws=False)
    await diagnose.run(options)
    return list(json.loads(capsys.readouterr().out)["results"])


async def test_front_ends_on_a_real_api_server(real: RealCluster, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = real.user_kubeconfig("front-ends-admin", ("system:masters",))
    client = await KubeClient.connect(str(kubeconfig))
    try:
        await body(real, client, kubeconfig, capsys)
    finally:
        await client.close()
        # The session's other tests run on a cluster without these CRDs, as most clusters are.
        real.admin.delete(f"/api/v1/namespaces/{NAMESPACE}")
        for manifest in ("gateway-api.yaml", "aws-load-balancer-controller.yaml", "eks-auto-mode.yaml"):
            for crd in yaml.safe_load_all((MANIFESTS / manifest).read_text()):
                real.admin.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}")


async def body(real: RealCluster, client: KubeClient, kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Without the CRDs, the front-end resources are absent: skipped cleanly, no error counted.
    telemetry = Telemetry()
    with pytest.raises(ApiError) as missing:
        await Reflector(client, resources.HTTP_ROUTES, Store("httproutes", asyncio.Event()), telemetry).list_once()
    assert missing.value.status == 404

    install(real, "gateway-api.yaml")
    install(real, "aws-load-balancer-controller.yaml")
    real.admin.namespace(NAMESPACE)
    objects = front_end_objects()
    auto_mode = [o for o in objects if o["apiVersion"].startswith("eks.amazonaws.com/")]
    for obj in objects:
        if obj not in auto_mode:
            real.admin.apply(obj)

    # The API server validates custom resources against the documented schema, and defaults them.
    bad = {
        "apiVersion": "gateway.k8s.aws/v1",
        "kind": "TargetGroupConfiguration",
        "metadata": {"name": "bad", "namespace": NAMESPACE},
        "spec": {"targetReference": {"name": "ratings"}, "defaultConfiguration": {"targetType": "pod"}},
    }
    with pytest.raises(ApiFailure) as refused:
        real.admin.apply(bad)
    assert refused.value.status == 422 and "targetType" in json.dumps(refused.value.body)
    gateway = real.admin.get(f"/apis/gateway.networking.k8s.io/v1/namespaces/{NAMESPACE}/gateways/{demo.GATEWAY}")
    assert gateway["spec"]["listeners"][0]["allowedRoutes"] == {"namespaces": {"from": "Same"}}
    route = real.admin.get(f"/apis/gateway.networking.k8s.io/v1/namespaces/{NAMESPACE}/httproutes/ratings")
    assert route["spec"]["parentRefs"][0]["kind"] == "Gateway"
    assert route["spec"]["rules"][0]["backendRefs"][0]["kind"] == "Service"

    # Auto Mode's API not served: its Ingress waits for nothing, and lbdoctor says so.
    results = await run_diagnose(kubeconfig, capsys)
    auto = next(r for r in results if r["object"] == {"kind": "IngressClass", "namespace": "", "name": "eks-alb"})
    assert (auto["status"], auto["reason"]) == ("fail", "AutoModeNotEnabled")
    merge = next(r for r in results if r["object"]["kind"] == "HTTPRoute" and r["check"] == "gateway_config")
    assert (merge["status"], merge["reason"], merge["object"]["name"]) == (
        "warn",
        "HealthCheckConfigReplacesDefault",
        "ratings",
    )
    assert "healthCheckPath" in merge["message"]
    accepted = next(r for r in results if r["object"]["kind"] == "GatewayClass")
    assert accepted["status"] == "ok"

    # Auto Mode enabled: its CRD served and the IngressClassParams there.
    install(real, "eks-auto-mode.yaml")
    for obj in auto_mode:
        real.admin.apply(obj)
    results = await run_diagnose(kubeconfig, capsys)
    auto = next(r for r in results if r["object"] == {"kind": "IngressClass", "namespace": "", "name": "eks-alb"})
    assert auto["status"] == "ok", auto
    assert any(r["reason"] == "NotSupportedByAutoMode" and r["object"]["name"] == "wishlist" for r in results)

    # A watch on a custom resource sees a route created after the list.
    store = Store("httproutes", asyncio.Event())
    task = asyncio.create_task(Reflector(client, resources.HTTP_ROUTES, store, telemetry).run())
    try:
        for _ in range(200):
            if store.synced:
                break
            await asyncio.sleep(0.05)
        late = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "late", "namespace": NAMESPACE},
            "spec": {
                "parentRefs": [{"name": demo.GATEWAY}],
                "rules": [{"backendRefs": [{"name": "ratings", "port": 80}]}],
            },
        }
        real.admin.apply(late)
        for _ in range(200):
            if f"{NAMESPACE}/late" in store.view():
                break
            await asyncio.sleep(0.05)
        seen = store.view()[f"{NAMESPACE}/late"]
        assert seen.kind == "HTTPRoute" and seen.backends[0].name == "ratings" and seen.backends[0].kind == "Service"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert telemetry.errors == []
