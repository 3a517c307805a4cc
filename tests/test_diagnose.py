"""``lbdoctor diagnose`` against clusters served by the fake API server: golden JSON, exit codes, table."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exporter import diagnose
from exporter.demo import cluster
from exporter.fakeapi import FakeApiServer
from exporter.fakeapi.state import KINDS_BY_KEY
from tests.conftest import next_ip

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
    # Without lbdoctor in the cluster, the probe steps say what would bring them: its cluster role.
    assert "not run" in text and "needs lbdoctor's cluster role" in text
    flat = " ".join(text.split())
    assert "Probes: not shown. no lbdoctor cluster role in the cluster" in flat and "--cluster-role" in flat
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


# ---- the node agents' probes, from lbdoctor's cluster role through the API server's service proxy -------------

NOW = 1_795_000_000.0  # the cluster role's clock in the canned answer below


def demo_probes() -> dict[str, Any]:
    """What the demo's cluster role answers at /api/v1/probes, built by the code that builds it, from the demo's
    objects: catalog answers 404, orders refuses, every other target passes; a second node's agent has stopped
    answering (its last answer 45 s old)."""
    from exporter.checks import health_probe
    from exporter.checks.health_probe import verdict
    from exporter.exchange import AgentState, AgentView, cluster_document, exported
    from exporter.kube import convert
    from exporter.lb.healthcheck import ControllerConfig
    from exporter.lb.plan import build_plan
    from exporter.lb.targets import TargetStatus, node_targets
    from exporter.lb.thresholds import LbState, PredictedHealth
    from exporter.model.probe import ProbeOutcome
    from exporter.model.results import Reason
    from exporter.model.snapshot import ClusterSnapshot

    objects = list(cluster.objects("127.77"))
    kinds = {"Pod": "pods", "Service": "services", "EndpointSlice": "endpoint_slices", "Ingress": "ingresses",
             "IngressClass": "ingress_classes", "Node": "nodes"}  # fmt: skip
    converters = {"Pod": convert.pod, "Service": convert.service, "EndpointSlice": convert.endpoint_slice,
                  "Ingress": convert.ingress, "IngressClass": convert.ingress_class, "Node": convert.node}  # fmt: skip
    found: dict[str, list[Any]] = {name: [] for name in kinds.values()}
    for obj in objects:
        if obj["kind"] in kinds:
            found[kinds[obj["kind"]]].append(converters[obj["kind"]](obj))
    snapshot = ClusterSnapshot.of(**found)
    targets = node_targets(build_plan(snapshot, ControllerConfig()), snapshot, cluster.NODE).targets
    refused = ProbeOutcome(False, Reason.CONNECTION_REFUSED, 0.001, detail="connection refused: nothing listens")
    failing = {  # by Service, or by pod
        "catalog": ProbeOutcome(False, Reason.RESPONSE_CODE_MISMATCH, 0.01, 404, detail="HTTP 404, expected 200"),
        "orders": refused,
        "checkout-2e1f0-tuvwx": refused,  # the crash-looping pod
    }
    statuses = []
    for target in sorted(targets, key=lambda t: (t.namespace, t.service, t.pod)):
        passing = ProbeOutcome(True, None, 0.002, 200, detail="HTTP 200")
        outcome = failing.get(target.pod, failing.get(target.service, passing))
        state = LbState.HEALTHY if outcome.success else LbState.UNHEALTHY
        health = PredictedHealth(state, 3 if outcome.success else 0, 0 if outcome.success else 3)
        statuses.append(TargetStatus(target, outcome, NOW - 2, health, None if outcome.success else outcome))
    results = exported(verdict(status, NOW) for status in statuses)
    assert {r.reason for r in results} >= {Reason.RESPONSE_CODE_MISMATCH, Reason.CONNECTION_REFUSED}
    assert health_probe  # the check that wrote them
    agents = [
        AgentView(cluster.NODE, "http://127.0.0.1:9850", AgentState.OK, NOW - 3, NOW - 60, True, None,
                  tuple(statuses), results),
        AgentView(cluster.OTHER_NODES[0], "http://10.0.2.45:9850", AgentState.STALE, NOW - 45, NOW - 600, True,
                  "unreachable: connection refused"),
    ]  # fmt: skip
    return cluster_document(agents, NOW)


async def serve_cluster_role(api: FakeApiServer, answer: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.AppRunner:
    """A cluster role on a loopback address, with the Service, Endpoints and pod the chart's would have."""
    app = web.Application()
    app.router.add_get("/api/v1/probes", answer)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    ip = next_ip()
    await web.TCPSite(runner, ip, 0).start()
    for obj in cluster.cluster_role_objects(ip, runner.addresses[0][1]):
        api.state.apply(obj)
    return runner


async def test_golden_with_the_node_agents_probes(
    api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """diagnose finds the cluster role by the chart's labels, reads it through the API server's service proxy,
    and reports the probes with where they came from and how old they are (golden JSON)."""
    cluster.seed(api.state, "127.77")
    document = demo_probes()
    asked: list[str] = []

    async def probes(request: web.Request) -> web.Response:
        asked.append(request.query_string)
        return web.json_response(document)

    runner = await serve_cluster_role(api, probes)
    try:
        options = diagnose.Options(namespace="shop", output="json", kubeconfig=str(api.write_kubeconfig(tmp_path / "k")))
        code = await diagnose.run(options)
        report = json.loads(capsys.readouterr().out)
        options.output = "table"
        await diagnose.run(options)
        table = " ".join(capsys.readouterr().out.split())
    finally:
        await runner.cleanup()
    assert asked == ["namespace=shop", "namespace=shop"]  # only what -n asks for crosses the proxy
    # The table says where the probes came from and how old they are, and which node saw each failure.
    assert (
        "Probes: from lbdoctor's cluster role lbdoctor/lbdoctor-cluster through the API server: "
        f"{len(document['targets'])} targets seen by 2 node agent(s) (1 ok, 1 stale), their answers at most 3 s old. "
        f"Not answering: {cluster.OTHER_NODES[0]} (stale, last answer 45 s old)."
    ) in table
    assert f"health_probe · ResponseCodeMismatch · Ingress shop/catalog (pod catalog-6f5d4-uvwxy, node {cluster.NODE})" in table
    assert any("/services/http:lbdoctor-cluster:http-metrics/proxy/api/v1/probes" in path for _, path in api.requests)
    report["generated_at"] = "<generated_at>"
    assert report["probes"]["age_seconds"] is not None
    report["probes"]["age_seconds"] = "<age>"
    golden = GOLDEN / "demo-shop-with-probes.json"
    if UPDATE:
        golden.write_text(json.dumps(report, indent=2) + "\n")
    assert report == json.loads(golden.read_text())
    assert code == 1
    probes_seen = {(r["reason"], r["object"]["name"]) for r in report["results"] if r["check"] == "health_probe"}
    assert {("ResponseCodeMismatch", "catalog"), ("ConnectionRefused", "orders")} <= probes_seen
    assert ("NodeAgentUnreachable", cluster.OTHER_NODES[0]) in probes_seen  # never silently healthy
    # diagnose's own finding and the node agent's are one story: the crash loop is why the probe is refused.
    results = report["results"]
    probe = next(r for r in results if r["check"] == "health_probe" and r["target"] and r["target"]["pod"] == "checkout-2e1f0-tuvwx")
    assert (results[probe["caused_by"]]["check"], results[probe["caused_by"]]["reason"]) == ("pod_status", "CrashLoopBackOff")
    assert report["probes"]["source"] == [{"namespace": "lbdoctor", "service": "lbdoctor-cluster", "via": "service proxy"}]
    stale = next(a for a in report["probes"]["agents"] if a["state"] == "stale")
    assert stale["age_seconds"] == 45.0  # the cluster role's age, whatever this machine's clock says


async def test_without_services_proxy_the_probes_step_says_so(
    api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.seed(api.state, "127.77")
    document = demo_probes()

    async def probes(_request: web.Request) -> web.Response:
        return web.json_response(document)

    runner = await serve_cluster_role(api, probes)
    api.forbidden.add("services/proxy")
    try:
        options = diagnose.Options(namespace="shop", kubeconfig=str(api.write_kubeconfig(tmp_path / "k")))
        await diagnose.run(options)
        table = " ".join(capsys.readouterr().out.split())
        options.output = "json"
        await diagnose.run(options)
        report = json.loads(capsys.readouterr().out)
    finally:
        await runner.cleanup()
    why = "RBAC does not let you read lbdoctor's cluster role lbdoctor/lbdoctor-cluster through the API server: ask for get on services/proxy in namespace lbdoctor"
    assert why in table
    assert "Health check tested by hand (curl / nc) │ health_probe │ not run │" in table
    assert report["probes"]["error"].startswith(why) and report["probes"]["source"] == []
    assert not [r for r in report["results"] if r["check"] == "health_probe"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (lambda: web.Response(status=401, text="Unauthorized"), "asks for credentials (basic auth in its web config)"),
        (lambda: web.json_response({"schema": "lbdoctor.results/v1"}), "answered something else: not a lbdoctor.probes/v1"),
        (lambda: web.Response(status=404, text="404: Not Found"), "is older than this diagnose"),
    ],
)
async def test_a_cluster_role_that_cannot_answer_is_one_line(
    api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], answer: Callable[[], web.Response], expected: str
) -> None:
    cluster.seed(api.state, "127.77")

    async def probes(_request: web.Request) -> web.Response:
        return answer()

    runner = await serve_cluster_role(api, probes)
    try:
        options = diagnose.Options(namespace="shop", output="json", kubeconfig=str(api.write_kubeconfig(tmp_path / "k")))
        await diagnose.run(options)
    finally:
        await runner.cleanup()
    error = json.loads(capsys.readouterr().out)["probes"]["error"]
    assert expected in error and "\n" not in error


async def test_an_unreachable_cluster_role_is_one_line(
    api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its Endpoints name an address where nothing listens: the API server's proxy answers 503."""
    cluster.seed(api.state, "127.77")
    with socket.socket() as sock:
        ip = next_ip()
        sock.bind((ip, 0))
        port = sock.getsockname()[1]
    for obj in cluster.cluster_role_objects(ip, port):
        api.state.apply(obj)
    options = diagnose.Options(namespace="shop", output="json", kubeconfig=str(api.write_kubeconfig(tmp_path / "k")))
    await diagnose.run(options)
    error = json.loads(capsys.readouterr().out)["probes"]["error"]
    assert error.startswith("the API server could not reach lbdoctor's cluster role lbdoctor/lbdoctor-cluster: ")
