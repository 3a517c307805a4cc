"""The front ends against a real kube-apiserver: the Gateway API's, the controller's and EKS Auto Mode's CRDs
installed as documented (tests/crds), the demo's objects created through the API (validated and defaulted
by it), then lbdoctor lists and watches them as it does on a cluster."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import diagnose
from exporter.demo import cluster
from exporter.fakeapi.state import KINDS_BY_OBJECT
from exporter.kube import resources
from exporter.kube.client import ApiError, KubeClient
from exporter.kube.store import Store
from exporter.kube.watch import Reflector
from tests.conftest import require_tool
from tests.realkube.crd_server import api_server

pytestmark = pytest.mark.slow

CRDS = Path(__file__).resolve().parents[1] / "crds"


class Telemetry:
    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def watch_started(self, resource: str) -> None:
        pass

    def watch_restarted(self, resource: str, reason: str) -> None:
        pass

    def error(self, component: str, kind: str) -> None:
        self.errors.append((component, kind))


def path_of(obj: dict[str, Any]) -> str:
    kind = KINDS_BY_OBJECT[(obj["apiVersion"], obj["kind"])]
    base = "/api/v1" if kind.group_version == "v1" else f"/apis/{kind.group_version}"
    namespace = obj["metadata"].get("namespace")
    return f"{base}/namespaces/{namespace}/{kind.plural}" if kind.namespaced and namespace else f"{base}/{kind.plural}"


async def install(client: KubeClient, manifest: str) -> None:
    names = []
    for crd in yaml.safe_load_all((CRDS / manifest).read_text()):
        await client.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd)
        names.append(crd["metadata"]["name"])
    for name in names:
        for _ in range(100):
            found = await client.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conditions = {c["type"]: c["status"] for c in (found.get("status") or {}).get("conditions") or []}
            if conditions.get("Established") == "True":
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"CRD {name} never became established")


async def run_diagnose(kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    options = diagnose.Options(kubeconfig=str(kubeconfig), namespace="shop", output="json")
    await diagnose.run(options)
    return list(json.loads(capsys.readouterr().out)["results"])


async def test_front_ends_on_a_real_api_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_tool("openssl")
    with api_server(tmp_path) as kubeconfig:
        client = await KubeClient.connect(str(kubeconfig))
        try:
            await body(client, kubeconfig, capsys)
        finally:
            await client.close()


async def body(client: KubeClient, kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Without the CRDs, the front-end resources are absent: skipped cleanly, no error counted.
    telemetry = Telemetry()
    routes = Store("httproutes", asyncio.Event())
    with pytest.raises(ApiError) as missing:
        await Reflector(client, resources.HTTP_ROUTES, routes, telemetry).list_once()
    assert missing.value.status == 404

    await install(client, "gateway-api.yaml")
    await install(client, "aws-load-balancer-controller.yaml")
    # (EndpointSlices of the demo point at loopback addresses, which a real API server refuses.)
    demo = [o for o in cluster.objects("127.77") if o["kind"] not in ("Namespace", "EndpointSlice")]
    for namespace in ("shop", cluster.CONTROLLER_NAMESPACE):
        if namespace != "kube-system":
            await client.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    auto_mode = [o for o in demo if o["apiVersion"].startswith("eks.amazonaws.com/")]
    for obj in demo:
        if obj not in auto_mode:
            await client.request("POST", path_of(obj), body=obj)

    # The API server validates custom resources against the documented schema, and defaults them.
    bad = {
        "apiVersion": "gateway.k8s.aws/v1",
        "kind": "TargetGroupConfiguration",
        "metadata": {"name": "bad", "namespace": "shop"},
        "spec": {"targetReference": {"name": "reviews"}, "defaultConfiguration": {"targetType": "pod"}},
    }
    with pytest.raises(ApiError) as refused:
        await client.request("POST", path_of(bad), body=bad)
    assert refused.value.status == 422 and "targetType" in refused.value.message
    gateway = await client.get(f"/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/{cluster.GATEWAY}")
    assert gateway["spec"]["listeners"][0]["allowedRoutes"] == {"namespaces": {"from": "Same"}}
    route = await client.get("/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/reviews")
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
        "reviews",
    )
    assert "healthCheckPath" in merge["message"]
    accepted = next(r for r in results if r["object"]["kind"] == "GatewayClass")
    assert accepted["status"] == "ok"

    # Auto Mode enabled: its CRD served and the IngressClassParams there.
    await install(client, "eks-auto-mode.yaml")
    for obj in auto_mode:
        await client.request("POST", path_of(obj), body=obj)
    results = await run_diagnose(kubeconfig, capsys)
    auto = next(r for r in results if r["object"] == {"kind": "IngressClass", "namespace": "", "name": "eks-alb"})
    assert auto["status"] == "ok", auto
    assert any(r["reason"] == "NotSupportedByAutoMode" and r["object"]["name"] == "wishlist" for r in results)

    # A watch on a custom resource sees a route created after the list.
    store = Store("httproutes", asyncio.Event())
    task = asyncio.create_task(Reflector(client, resources.HTTP_ROUTES, store, telemetry).run())
    try:
        for _ in range(100):
            if store.synced:
                break
            await asyncio.sleep(0.05)
        late = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "late", "namespace": "shop"},
            "spec": {"parentRefs": [{"name": cluster.GATEWAY}], "rules": [{"backendRefs": [{"name": "reviews", "port": 80}]}]},
        }
        await client.request("POST", path_of(late), body=late)
        for _ in range(100):
            if "shop/late" in store.view():
                break
            await asyncio.sleep(0.05)
        seen = store.view()["shop/late"]
        assert seen.kind == "HTTPRoute" and seen.backends[0].name == "reviews" and seen.backends[0].kind == "Service"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert telemetry.errors == []
