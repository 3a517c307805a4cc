"""``lbdoctor diagnose`` against clusters served by the fake API server: golden JSON, exit codes, table."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exporter import diagnose
from exporter.demo import cluster
from exporter.fakeapi import FakeApiServer
from exporter.fakeapi.state import KINDS_BY_KEY

GOLDEN = Path(__file__).parent / "golden"
# Not LBDOCTOR_*: diagnose reads those as settings, and would refuse an unknown one.
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _nlb(name: str, namespace: str = "edge", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {
                "service.beta.kubernetes.io/aws-load-balancer-type": "external",
                "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
            },
        },
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "targetPort": 8080}], **spec},
    }


def _pod(name: str, namespace: str = "edge", **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": namespace, "labels": {"app": "web"}, **extra.pop("meta", {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "ports": [{"containerPort": 8080}]}]},
        "status": {
            "phase": "Running",
            "podIP": "10.1.0.5",
            "containerStatuses": [{"name": "app", "ready": True, "state": {"running": {}}}],
            **extra,
        },
    }


def seed_edge_cases(api: FakeApiServer) -> None:
    """Bad input the runbook must survive: no selector, headless, ExternalName, missing fields, terminating."""
    state = api.state
    state.apply(_nlb("manual"))  # selector-less, with a hand-made EndpointSlice
    state.apply(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "manual-1", "namespace": "edge", "labels": {"kubernetes.io/service-name": "manual"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.9.9.9"]}],
        }
    )
    state.apply(_nlb("orphan"))  # no selector, no slices
    state.apply({**_nlb("headless", clusterIP="None", selector={"app": "web"})})
    state.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": "edge"},
                 "spec": {"type": "ExternalName", "externalName": "example.com"}})
    state.apply({**_nlb("web", selector={"app": "web"})})
    state.apply(_pod("web-1"))
    state.apply(_pod("web-2", meta={"deletionTimestamp": "2026-11-27T00:00:00Z"}))
    state.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare", "namespace": "edge", "labels": {"app": "web"}}})
    state.apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "broken", "namespace": "edge",
                         "annotations": {"kubernetes.io/ingress.class": "alb",
                                         "alb.ingress.kubernetes.io/healthcheck-interval-seconds": "often"}},
            "spec": {"rules": [{"http": {"paths": [{"path": "/", "backend": {"service": {"name": "gone", "port": {"number": 80}}}}]}}]},
        }
    )


SCENARIOS: dict[str, tuple[Callable[[FakeApiServer], None], diagnose.Options]] = {
    "demo-shop": (lambda api: cluster.seed(api.state, "127.77"), diagnose.Options(namespace="shop", output="json")),
    "demo-ingress-coupons": (
        lambda api: cluster.seed(api.state, "127.77"),
        diagnose.Options(namespace="shop", target="ingress/coupons", output="json"),
    ),
    "demo-service-alb-instance": (
        lambda api: cluster.seed(api.state, "127.77"),
        diagnose.Options(namespace="shop", target="service/alb-instance", output="json"),
    ),
    "demo-httproute-ratings": (
        lambda api: cluster.seed(api.state, "127.77"),
        diagnose.Options(namespace="shop", target="httproute/ratings", output="json"),
    ),
    "edge-cases": (seed_edge_cases, diagnose.Options(namespace="edge", output="json")),
    "forbidden-pods-and-logs": (
        lambda api: (cluster.seed(api.state, "127.77"), api.forbidden.update({"pods"})),
        diagnose.Options(all_namespaces=True, output="json"),
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_golden(name: str, api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed, options = SCENARIOS[name]
    seed(api)
    options.kubeconfig = str(api.write_kubeconfig(tmp_path / "kubeconfig"))
    code = await diagnose.run(options)
    report = json.loads(capsys.readouterr().out)
    report["generated_at"] = "<generated_at>"
    assert code == (1 if report["summary"]["fail"] else 0)
    golden = GOLDEN / f"{name}.json"
    if UPDATE:
        golden.write_text(json.dumps(report, indent=2) + "\n")
    assert golden.exists(), f"no golden file: run UPDATE_GOLDEN=1 scripts/test -k {name} and review it"
    assert report == json.loads(golden.read_text())
    for result in report["results"]:  # causes come before consequences
        if result["caused_by"] is not None:
            assert result["caused_by"] < report["results"].index(result)


async def test_forbidden_resources_become_unknown_not_errors(
    api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.seed(api.state, "127.77")
    api.forbidden.update({"pods", "deployments"})
    options = diagnose.Options(namespace="shop", output="json", kubeconfig=str(api.write_kubeconfig(tmp_path / "k")))
    await diagnose.run(options)
    results = json.loads(capsys.readouterr().out)["results"]
    unknown = [r for r in results if r["status"] == "unknown"]
    assert {r["check"] for r in unknown} >= {"selector", "controller"}
    assert all(r["reason"] == "Forbidden" for r in unknown)
    assert any("RBAC forbids listing pods" in r["message"] for r in unknown)


def lbdoctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=60)


def test_unreachable_cluster_exits_3_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = FakeApiServer(port=port)
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")  # points at a port nobody listens on
    result = lbdoctor("diagnose", "--kubeconfig", str(kubeconfig), "-A")
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "cannot reach the API server" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-A", "-n", "shop"], "either -n/--namespace or -A"),
        (["-A", "service/web"], "use -n, not -A"),
        (["-n", "shop", "deployment/web"], "expected service/NAME, ingress/NAME or httproute/NAME"),
        (["--kubeconfig", "/nonexistent/kubeconfig"], "does not exist"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = lbdoctor("diagnose", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


async def test_table_reads_as_the_runbook(api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.seed(api.state, "127.77")
    options = diagnose.Options(namespace="shop", kubeconfig=str(api.write_kubeconfig(tmp_path / "k")))
    assert await diagnose.run(options) == 1
    text = capsys.readouterr().out
    assert "The runbook" in text and "What was found, root causes first" in text
    assert "not run" in text and "needs the node agent" in text
    assert "NoPodsMatchSelector" in text and "↳ follows from #" in text
    assert "found" in text and "do" in text


async def test_controller_found_by_label_when_its_deployment_has_another_name(
    api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Installed under another release name, the controller is still found by its label, as the cluster role
    finds it, and its logs still show the denied action."""
    cluster.seed(api.state, "127.77")
    for obj in list(cluster.objects("127.77")):
        if obj["kind"] == "Deployment":
            api.state.delete(KINDS_BY_KEY["apps/v1/deployments"], cluster.CONTROLLER_NAMESPACE, cluster.CONTROLLER_NAME)
            api.state.apply({**obj, "metadata": {**obj["metadata"], "name": "lbc"}})
    options = diagnose.Options(namespace="shop", output="json", kubeconfig=str(api.write_kubeconfig(tmp_path / "k")))
    await diagnose.run(options)
    results = json.loads(capsys.readouterr().out)["results"]
    [denied] = [r for r in results if r["reason"] == "ControllerAccessDenied"]
    assert denied["object"] == {"kind": "Deployment", "namespace": "kube-system", "name": "aws-load-balancer-controller"}
    assert cluster.CONTROLLER_DENIED_ACTION in denied["message"]
    assert not [r for r in results if r["reason"] == "ControllerNotFound"]


async def test_diagnose_takes_the_controllers_settings_like_the_daemon(api: FakeApiServer, tmp_path: Path) -> None:
    """A Service of load-balancer class custom/nlb is an NLB only for a controller run with that class: the
    flag, LBDOCTOR_LOAD_BALANCER_CLASS and the config file say so, as for lbdoctor run."""
    api.state.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "custom", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "custom/nlb", "selector": {"app": "x"},
                     "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]},
        }
    )  # fmt: skip
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")

    async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", "diagnose", "--kubeconfig", str(kubeconfig), "--no-aws", *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def checks(*args: str, env: dict[str, str] | None = None) -> set[str]:
        code, out, err = await run("-o", "json", *args, env=env)
        assert code in (0, 1), err
        return {r["check"] for r in json.loads(out)["results"] if r["object"]["name"] == "custom"}

    assert "service_annotations" not in await checks()
    assert "service_annotations" in await checks("--load-balancer-class", "custom/nlb")
    assert "service_annotations" in await checks(env={"LBDOCTOR_LOAD_BALANCER_CLASS": "custom/nlb"})
    config = tmp_path / "settings.yaml"
    config.write_text("load_balancer_class: custom/nlb\n")
    assert "service_annotations" in await checks("--config", str(config))
    config.write_text("load_balancer_clas: custom/nlb\n")
    code, _, err = await run("--config", str(config))
    assert code == 2 and "unknown setting 'load_balancer_clas'" in err and "Traceback" not in err
