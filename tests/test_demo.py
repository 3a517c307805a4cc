"""End to end: ``lbdoctor demo`` as a user runs it shows every seeded fault with the right reason."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.checks.registry import REGISTRY, Needs, Role
from exporter.demo import aws as demo_aws
from exporter.demo import kube_proxy as demo_kube_proxy
from exporter.demo.cluster import NODE, SCENARIOS
from tests.conftest import require_tool

pytestmark = pytest.mark.slow

AWS_CHECKS = tuple(spec.check.value for spec in REGISTRY if spec.needs is Needs.AWS)
# The node agents' checks: the cluster role shows their failures too (the one pane), which are not its own.
NODE_CHECKS = tuple(spec.check.value for spec in REGISTRY if spec.roles == frozenset({Role.NODE}))
# The probe failures of the demo's node agent: what the one pane (the cluster role, diagnose) must show.
PROBE_FAILURES = {("catalog", "ResponseCodeMismatch"), ("search", "Timeout"), ("orders", "ConnectionRefused")}
# The demo's AWS side runs when moto is installed (the test extra has it); its kube-proxy side as root.
WITH_AWS = demo_aws.missing() is None
WITH_KUBE_PROXY = demo_kube_proxy.missing() is None
KUBE_PROXY_FINDINGS = (
    ("Node", NODE, "KubeProxyUnhealthy"),
    ("Node", NODE, "KubeProxySyncStale"),
    ("Service", demo_kube_proxy.MISSING_SERVICE, "ServiceRulesMissing"),
    ("Service", demo_kube_proxy.STALE_SERVICE, "StaleEndpointRules"),
)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


@pytest.fixture(scope="module", name="demo_urls")
def _demo_urls() -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--listen", "127.0.0.1:0", "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    urls: dict[str, str] = {}
    for line in process.stdout:
        found = re.search(r"(node agent|cluster role)\s+status page (http://\S+?)/\s", line)
        if found:
            urls[found.group(1).split()[0]] = found.group(2)
        if line.startswith("  kubeconfig"):
            urls["kubeconfig"] = line.split()[1]
        if line.startswith("  try"):
            urls["try"] = line
        if line.startswith("Load-balanced services"):
            break
    assert {"node", "cluster", "kubeconfig", "try"} <= set(urls), f"the demo did not print its URLs: {urls}"
    assert ("AWS_ENDPOINT_URL=" in urls["try"]) == WITH_AWS
    yield process, urls
    if process.poll() is None:
        process.terminate()  # SIGTERM: the demo deletes its network namespace
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(name="demo")
def _demo(demo_urls: tuple[subprocess.Popen[str], dict[str, str]]) -> tuple[subprocess.Popen[str], str]:
    """The node agent's base URL."""
    return demo_urls[0], demo_urls[1]["node"]


def _mine(results: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in results if r["object"]["name"] == name or r["object"]["name"].startswith(name + "-")]


def settled(document: dict[str, Any]) -> list[str]:
    """What is still missing from the node agent's API compared with the scenarios' expectations (and, as
    root, with the kube-proxy faults the demo seeds)."""
    missing = []
    results = document["results"]
    if WITH_KUBE_PROXY:
        for kind, name, reason in KUBE_PROXY_FINDINGS:
            if not any(
                r["check"] == "kube_proxy" and r["reason"] == reason and r["object"]["kind"] == kind and r["object"]["name"] == name
                for r in results
            ):
                missing.append(f"kube_proxy {reason} on {kind} {name}")
    for scenario in SCENARIOS:
        if scenario.expect_check is None:
            continue
        mine = [
            r
            for r in results
            if r["object"]["name"] == scenario.name or r["object"]["name"].startswith(scenario.name + "-")
        ]
        if scenario.expect_reason is None:
            probes = [r for r in mine if r["check"] == "health_probe"]
            if not probes or any(r["status"] != "ok" for r in probes):
                missing.append(f"{scenario.name}: healthy")
        elif not any(r["check"] == scenario.expect_check and r["reason"] == scenario.expect_reason for r in mine):
            missing.append(f"{scenario.name}: {scenario.expect_check} {scenario.expect_reason}")
    return missing


def test_demo_shows_every_seeded_fault(demo: tuple[subprocess.Popen[str], str], output_dir: Path) -> None:
    _process, base = demo
    deadline = time.monotonic() + 75
    missing: list[str] = ["not polled yet"]
    document: dict[str, Any] = {}
    while time.monotonic() < deadline:
        document = json.loads(get(f"{base}/api/v1/results"))
        missing = settled(document)
        if not missing:
            break
        time.sleep(1)
    (output_dir / "results.json").write_text(json.dumps(document, indent=2))
    assert not missing, f"the demo never showed: {missing}"
    assert document["ready"] is True

    results = document["results"]
    crash = next(r for r in results if r["reason"] == "CrashLoopBackOff")
    consequence = next(
        r for r in results if r["check"] == "health_probe" and r["object"]["name"] == "checkout" and r["status"] != "ok"
    )
    assert results[consequence["caused_by"]] == crash  # the crash loop is named as the root cause
    assert results.index(crash) < results.index(consequence)
    assert consequence["remedy"].startswith("caused by pod_status CrashLoopBackOff on Pod shop/checkout-2e1f0-tuvwx")
    # Every effect the demo's node agent sees names its cause: the refused probe of legacy-api follows from the
    # targetPort its pod does not expose.
    refused = next(r for r in results if r["check"] == "health_probe" and r["object"]["name"] == "legacy-api")
    port = results[refused["caused_by"]]
    assert (port["check"], port["reason"], port["object"]["name"]) == ("target_port", "TargetPortNotExposed", "legacy-api")
    effects = [r for r in results if r["status"] != "ok" and r["caused_by"] is not None]
    assert {(r["check"], r["object"]["name"]) for r in effects} >= {("health_probe", "checkout"), ("health_probe", "legacy-api")}

    page = get(f"{base}/")
    (output_dir / "status.html").write_text(page)
    metrics = get(f"{base}/metrics")
    (output_dir / "metrics.txt").write_text(metrics)
    for scenario in SCENARIOS:
        if scenario.expect_reason is None or scenario.expect_check is None:
            continue
        assert f'data-reason="{scenario.expect_reason}"' in page, scenario.name
        assert f'reason="{scenario.expect_reason}"' in metrics, scenario.name
    for scenario in SCENARIOS:
        if scenario.expect_reason is None and scenario.expect_check is not None:
            assert (
                f'lbdoctor_check_status{{check="health_probe",namespace="shop",kind="Service",name="{scenario.name}",status="ok"}} 1'
                in metrics
                or (
                    f'lbdoctor_check_status{{check="health_probe",namespace="shop",kind="Ingress",name="{scenario.name}",status="ok"}} 1'
                    in metrics
                )
            ), scenario.name
    assert re.search(r'lbdoctor_probe_transitions_total\{[^}]*service="recommendations"[^}]*\} [1-9]', metrics)
    # The metrics' root-cause view: the crash loop is a root, the refused probe follows from it.
    assert 'lbdoctor_check_root_cause{check="pod_status",namespace="shop",kind="Pod",name="checkout-2e1f0-tuvwx",reason="CrashLoopBackOff"} 1' in metrics
    assert re.search(r'lbdoctor_check_caused_by\{check="health_probe",[^}]*name="legacy-api",[^}]*cause_check="target_port"', metrics)
    assert 'lbdoctor_probe_predicted_healthy{namespace="shop",service="storefront"' in metrics
    # The front ends beyond Ingress and Service: a gRPC check answered 12 (UNIMPLEMENTED) where 0 is expected,
    # an HTTPRoute's target probed on the path the merged TargetGroupConfigurations give it, Auto Mode's ip targets.
    assert re.search(r'lbdoctor_probe_grpc_status_code\{[^}]*service="pricing"[^}]*path="/AWS.ALB/healthcheck",owner="ingress/pricing"\} 12\n', metrics)
    grpc = next(r for r in results if r["object"]["name"] == "pricing" and r["check"] == "health_probe")
    assert "gRPC POST h2c://" in grpc["message"] and "gRPC status 12 (UNIMPLEMENTED), expected 0" in grpc["message"]
    assert re.search(r'lbdoctor_check_status\{check="health_probe",namespace="shop",kind="HTTPRoute",name="ratings",status="(warn|fail)"\} 1', metrics)
    assert re.search(r'lbdoctor_probe_success\{namespace="shop",service="ratings",pod="ratings-[^"]+",[^}]*path="/",owner="httproute/ratings"\} 0', metrics)
    assert re.search(r'lbdoctor_probe_success\{namespace="shop",service="wishlist",pod="wishlist-[^"]+",[^}]*owner="ingress/wishlist"\} 1', metrics)
    assert "via Gateway shop/shop" in page and "by EKS Auto Mode" in page
    lost = next(r for r in results if r["object"]["name"] == "ratings" and r["check"] == "health_probe" and r["status"] != "ok")
    assert results[lost["caused_by"]]["reason"] == "HealthCheckConfigReplacesDefault"  # the merge is the root cause


def test_exposition_passes_promtool(demo: tuple[subprocess.Popen[str], str]) -> None:
    promtool = require_tool("promtool")
    _, base = demo
    metrics = get(f"{base}/metrics")
    checked = subprocess.run([promtool, "check", "metrics"], input=metrics, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == ""


def test_readyz_healthz_and_gzip(demo: tuple[subprocess.Popen[str], str]) -> None:
    _, base = demo
    assert get(f"{base}/healthz").strip() == "ok"
    assert get(f"{base}/readyz").strip() == "ready"
    request = urllib.request.Request(f"{base}/metrics", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        import gzip

        assert b"lbdoctor_build_info" in gzip.decompress(response.read())


def aws_missing(document: dict[str, Any]) -> list[str]:
    """What the cluster role (or diagnose with the demo's AWS) has not reported yet of the AWS findings."""
    results = document["results"]
    missing = []
    for scenario in SCENARIOS:
        mine = _mine(results, scenario.name)
        for check, reason in scenario.aws:
            if not any(r["check"] == check and r["reason"] == reason for r in mine):
                missing.append(f"{scenario.name}: {check} {reason}")
    partner = [r for r in results if r["object"]["name"] == demo_aws.PARTNER]
    for check, reason in (("elb_target_health", "TargetGroupNotFound"), ("controller", "ReconcileFailed")):
        if not any(r["check"] == check and r["reason"] == reason for r in partner):
            missing.append(f"{demo_aws.PARTNER}: {check} {reason}")
    return missing


def cluster_missing(document: dict[str, Any]) -> list[str]:
    """What the cluster role (or diagnose) has not reported yet of the scenarios' object findings (AWS's are
    aws_missing's)."""
    results = document["results"]
    missing = []
    for scenario in SCENARIOS:
        mine = [r for r in _mine(results, scenario.name) if r["check"] not in (*AWS_CHECKS, *NODE_CHECKS)]
        if scenario.cluster_check is None:
            bad = [f"{r['check']}:{r['reason']}" for r in mine if r["status"] == "fail"]
            if bad:
                missing.append(f"{scenario.name} should have no failing object check, has {bad}")
        elif not any(r["check"] == scenario.cluster_check and r["reason"] == scenario.cluster_reason for r in mine):
            missing.append(f"{scenario.name}: {scenario.cluster_check} {scenario.cluster_reason}")
    if not any(r["check"] == "controller" and r["reason"] == "ControllerAccessDenied" for r in results):
        missing.append("controller: ControllerAccessDenied")
    return missing


def test_cluster_role_and_diagnose_show_every_object_finding(
    demo_urls: tuple[subprocess.Popen[str], dict[str, str]], output_dir: Path
) -> None:
    _, urls = demo_urls
    deadline = time.monotonic() + 75
    document: dict[str, Any] = {}
    missing = ["not polled yet"]
    while time.monotonic() < deadline and missing:
        document = json.loads(get(f"{urls['cluster']}/api/v1/results"))
        missing = cluster_missing(document) + (aws_missing(document) if WITH_AWS else [])
        time.sleep(0.5)
    (output_dir / "cluster-results.json").write_text(json.dumps(document, indent=2))
    assert not missing, missing
    results = document["results"]
    selector = next(r for r in results if r["reason"] == "NoPodsMatchSelector")
    endpoints = next(r for r in results if r["reason"] == "NoEndpoints")
    assert results[endpoints["caused_by"]] == selector  # no pods → no endpoints is one problem, rooted in the selector
    assert endpoints["remedy"] == f"caused by selector NoPodsMatchSelector on Service shop/alb-instance: {selector['remedy']}"

    metrics = get(f"{urls['cluster']}/metrics")
    page = get(f"{urls['cluster']}/")
    (output_dir / "cluster-status.html").write_text(page)
    for scenario in SCENARIOS:
        if scenario.cluster_reason:
            assert f'check="{scenario.cluster_check}"' in metrics and f'reason="{scenario.cluster_reason}"' in metrics
            assert f'data-reason="{scenario.cluster_reason}"' in page, scenario.name
    assert 'reason="ControllerAccessDenied"' in metrics
    # EKS Auto Mode has no Deployment: lbdoctor asks its API; the controller's GatewayClass is accepted.
    ok = {(r["object"]["kind"], r["object"]["name"]) for r in results if r["check"] == "controller" and r["status"] == "ok"}
    assert {("IngressClass", "eks-alb"), ("GatewayClass", "aws-alb")} <= ok
    rollout = [r for r in results if r["check"] == "rollout" and r["status"] != "ok"]
    assert {r["object"]["name"] for r in rollout} == {"notifications"}  # every other demo pod outlives its drain

    # diagnose from a "laptop": the command the banner prints under "try".
    words = shlex.split(urls["try"])[1:]
    env = dict(word.split("=", 1) for word in words if "=" in word and word.startswith("AWS_"))
    args = [word for word in words if not word.startswith("AWS_")]
    assert args[:4] == ["lbdoctor", "diagnose", "--kubeconfig", urls["kubeconfig"]], args
    command = [sys.executable, "-m", "exporter", *args[1:], "-o", "json"]
    diagnosis = subprocess.run(command, capture_output=True, text=True, timeout=180, env={**os.environ, **env})
    assert diagnosis.returncode == 1, diagnosis.stderr  # checks fail
    report = json.loads(diagnosis.stdout)
    (output_dir / "diagnose.json").write_text(json.dumps(report, indent=2))
    assert report["schema"] == "lbdoctor.diagnosis/v1"
    assert cluster_missing(report) == []
    assert not WITH_AWS or aws_missing(report) == []

    def story(found: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        # The flapping target's state (the LB's, and its probe's reason) depends on the moment it is asked.
        return {
            (r["check"], r["reason"], r["object"]["name"])
            for r in found
            if r["status"] != "ok"
            # diagnose reads the node agents' findings from the cluster role: the same story, probes included
            and not (r["check"] in (*AWS_CHECKS, *NODE_CHECKS) and r["object"]["name"] == "recommendations")
        }

    assert story(results) == story(report["results"])  # the cluster role and diagnose tell the same story


def probe_failures(results: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r["object"]["name"], r["reason"]) for r in results if r["check"] == "health_probe" and r["status"] != "ok"}


def test_the_cluster_role_is_the_one_pane(
    demo_urls: tuple[subprocess.Popen[str], dict[str, str]], output_dir: Path
) -> None:
    """The node agent's probe failures, with their reasons, on the cluster role's API, page and /metrics (it
    finds the agent by its DaemonSet and reads it with conditional requests), and in diagnose -A through the
    API server's service proxy, each saying where they came from and how old they are."""
    _, urls = demo_urls
    central = urls["cluster"]
    deadline = time.monotonic() + 75
    document: dict[str, Any] = {}
    while time.monotonic() < deadline:
        document = json.loads(get(f"{central}/api/v1/results"))
        if probe_failures(document["results"]) >= PROBE_FAILURES:
            break
        time.sleep(0.5)
    (output_dir / "cluster-results.json").write_text(json.dumps(document, indent=2))
    assert probe_failures(document["results"]) >= PROBE_FAILURES, probe_failures(document["results"])
    failing = [r for r in document["results"] if r["check"] == "health_probe" and r["status"] != "ok"]
    assert {r["node"] for r in failing} == {NODE}  # each says which node probed it
    [agent] = document["agents"]
    assert (agent["node"], agent["state"], agent["ready"]) == (NODE, "ok", True)
    assert 0 <= agent["age_seconds"] < 30 and agent["read_at"]
    node = json.loads(get(f"{urls['node']}/api/v1/results"))
    rows = {(t["owner"]["name"], t["pod"], t["port"]) for t in document["targets"]}
    assert rows == {(t["owner"]["name"], t["pod"], t["port"]) for t in node["targets"]}  # every target, every node
    assert agent["targets"] == len(node["targets"])

    page = get(f"{central}/")
    (output_dir / "cluster-status.html").write_text(page)
    assert f'<tr data-node="{NODE}" data-state="ok">' in page  # the node agents' table
    for name, reason in PROBE_FAILURES:  # each load balancer's targets, with the node that probes them
        assert re.search(rf'<tr data-pod="{name}-[^"]+" data-node="{re.escape(NODE)}" data-reason="{reason}">', page), name

    metrics = get(f"{central}/metrics")
    (output_dir / "cluster-metrics.txt").write_text(metrics)
    for name, reason in PROBE_FAILURES:
        assert re.search(rf'lbdoctor_check_failure_reason\{{check="health_probe",namespace="shop",kind="\w+",name="{name}",reason="{reason}"\}} 1', metrics), name
    assert f'lbdoctor_node_agent_up{{node="{NODE}"}} 1' in metrics
    assert re.search(rf'lbdoctor_node_agent_targets\{{node="{re.escape(NODE)}",state="unhealthy"\}} [1-9]', metrics)
    # The exchange is conditional: a read of an agent whose states did not change is answered 304 (the demo's
    # flapping target changes them now and then).
    deadline = time.monotonic() + 60
    while not re.search(r'lbdoctor_node_agent_reads_total\{outcome="not_modified"\} [1-9]', metrics):
        assert time.monotonic() < deadline, "no read of the node agent was answered 304 Not Modified"
        time.sleep(1)
        metrics = get(f"{central}/metrics")

    # diagnose from a "laptop", through the (fake) API server's service proxy to the cluster role.
    words = shlex.split(urls["try"])[1:]
    env = dict(word.split("=", 1) for word in words if "=" in word and word.startswith("AWS_"))
    args = [word for word in words if not word.startswith("AWS_")]
    command = [sys.executable, "-m", "exporter", *args[1:], "-o", "json"]
    diagnosis = subprocess.run(command, capture_output=True, text=True, timeout=180, env={**os.environ, **env})
    report = json.loads(diagnosis.stdout)
    (output_dir / "diagnose-probes.json").write_text(json.dumps(report, indent=2))
    assert probe_failures(report["results"]) >= PROBE_FAILURES
    assert report["probes"]["source"] == [{"namespace": "lbdoctor", "service": "lbdoctor-cluster", "via": "service proxy"}]
    assert report["probes"]["error"] is None and report["probes"]["targets"] == len(node["targets"])
    assert [(a["node"], a["state"]) for a in report["probes"]["agents"]] == [(NODE, "ok")]
    assert 0 <= report["probes"]["agents"][0]["age_seconds"] < 30
    table = subprocess.run(command[:-2], capture_output=True, text=True, timeout=180, env={**os.environ, **env})
    flat = " ".join(table.stdout.split())
    assert re.search(
        r"Probes: from lbdoctor's cluster role lbdoctor/lbdoctor-cluster through the API server: \d+ targets seen by "
        r"1 node agent\(s\) \(1 ok\), their answers at most \d+ s old\.",
        flat,
    ), flat[:3000]
    for name, reason in PROBE_FAILURES:  # each failure says which node's agent saw it
        assert re.search(rf"health_probe · {reason} · \w+ shop/{name} \(pod {name}-\S+, node {re.escape(NODE)}\)", flat), name
    assert re.search(r"Health check tested by hand \(curl / nc\) │ health_probe │ fail │ \d+ fail", flat), flat[:3000]


@pytest.mark.skipif(not WITH_AWS, reason="the demo's AWS side needs moto[server] (the demo and test extras have it)")
def test_the_load_balancer_and_the_probe_disagree_on_the_network_path(
    demo_urls: tuple[subprocess.Popen[str], dict[str, str]], output_dir: Path
) -> None:
    """The LB says unhealthy while the node's probe passes: the cluster role blames the network path and
    links the finding that explains it; where both fail, it is the application."""
    _, urls = demo_urls
    deadline = time.monotonic() + 75
    missing = ["not polled yet"]
    document: dict[str, Any] = {}
    while time.monotonic() < deadline and missing:
        document = json.loads(get(f"{urls['cluster']}/api/v1/results"))
        missing = aws_missing(document)
        time.sleep(0.5)
    assert not missing, missing
    (output_dir / "cluster-results.json").write_text(json.dumps(document, indent=2))
    results = document["results"]
    for name, cause in (("reviews", "security_groups"), ("ledger", "network")):
        elb = next(r for r in _mine(results, name) if r["check"] == "elb_target_health" and r["status"] == "fail")
        assert elb["caused_by"] is not None and results[elb["caused_by"]]["check"] == cause, elb
        assert "network" in elb["message"] and "probe" in elb["message"], elb["message"]
    node = json.loads(get(f"{urls['node']}/api/v1/results"))["results"]
    for name in ("reviews", "ledger"):  # our probe from the node passes
        assert {r["status"] for r in _mine(node, name) if r["check"] == "health_probe"} == {"ok"}
    catalog = next(r for r in _mine(results, "catalog") if r["check"] == "elb_target_health" and r["status"] == "fail")
    assert "application" in catalog["message"] or "ResponseCodeMismatch" in catalog["message"]
    metrics = get(f"{urls['cluster']}/metrics")
    assert re.search(r'lbdoctor_elb_target_state\{[^}]*service="search"[^}]*state="unhealthy"\} 1', metrics)
    assert re.search(r'lbdoctor_readiness_gate_ready\{namespace="shop",pod="reviews-[^"]+",targetgroupbinding="k8s-shop-reviews-[^"]+"\} 0', metrics)
    assert re.search(r'lbdoctor_targetgroupbinding_target_group_exists\{namespace="shop",targetgroupbinding="partner-feed",target_group="partner-feed"\} 0', metrics)
    assert 'lbdoctor_aws_api_requests_total{operation="GetMetricData",outcome="success"}' in metrics
    assert 'lbdoctor_aws_target_health_reads_total{trigger="binding"}' in metrics  # the deletion was noticed by its event


def test_sigterm_stops_within_five_seconds(demo: tuple[subprocess.Popen[str], str]) -> None:
    """Both roles stop in stages within 5 s of SIGTERM and exit 0."""
    process, _ = demo
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0
    assert time.monotonic() - started < 5
    assert process.stderr is not None
    log = process.stderr.read()
    events = [json.loads(line)["event"] for line in log.splitlines() if line.startswith("{")]
    assert "lbdoctor stopped" in events
    assert "Traceback" not in log
    if WITH_KUBE_PROXY:  # the demo's network namespace is gone with it
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert f"lbdoctor-demo-{process.pid}" not in namespaces
