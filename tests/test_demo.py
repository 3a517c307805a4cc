"""End to end: ``lbdoctor demo`` as a user runs it shows every seeded fault with the right reason."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.demo.cluster import SCENARIOS
from tests.conftest import require_tool

pytestmark = pytest.mark.slow


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
        if "kubeconfig" in line:
            urls["kubeconfig"] = line.split()[1]
        if len(urls) == 3:
            break
    assert set(urls) == {"node", "cluster", "kubeconfig"}, f"the demo did not print its URLs: {urls}"
    yield process, urls
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(name="demo")
def _demo(demo_urls: tuple[subprocess.Popen[str], dict[str, str]]) -> tuple[subprocess.Popen[str], str]:
    """The node agent's base URL."""
    return demo_urls[0], demo_urls[1]["node"]


def _mine(results: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in results if r["object"]["name"] == name or r["object"]["name"].startswith(name + "-")]


def settled(document: dict[str, Any]) -> list[str]:
    """What is still missing from the node agent's API compared with the scenarios' expectations."""
    missing = []
    results = document["results"]
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
    assert 'lbdoctor_probe_predicted_healthy{namespace="shop",service="storefront"' in metrics
    # The front ends beyond Ingress and Service: a gRPC check answered 12 (UNIMPLEMENTED) where 0 is expected,
    # an HTTPRoute's target probed on the path the merged TargetGroupConfigurations give it, Auto Mode's ip targets.
    assert re.search(r'lbdoctor_probe_grpc_status_code\{[^}]*service="pricing"[^}]*path="/AWS.ALB/healthcheck"\} 12\n', metrics)
    grpc = next(r for r in results if r["object"]["name"] == "pricing" and r["check"] == "health_probe")
    assert "gRPC POST h2c://" in grpc["message"] and "gRPC status 12 (UNIMPLEMENTED), expected 0" in grpc["message"]
    assert re.search(r'lbdoctor_check_status\{check="health_probe",namespace="shop",kind="HTTPRoute",name="reviews",status="(warn|fail)"\} 1', metrics)
    assert re.search(r'lbdoctor_probe_success\{namespace="shop",service="reviews",pod="reviews-[^"]+",[^}]*path="/"\} 0', metrics)
    assert re.search(r'lbdoctor_probe_success\{namespace="shop",service="wishlist",pod="wishlist-[^"]+",[^}]*\} 1', metrics)
    assert "via Gateway shop/shop" in page and "by EKS Auto Mode" in page
    lost = next(r for r in results if r["object"]["name"] == "reviews" and r["check"] == "health_probe" and r["status"] != "ok")
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


def cluster_missing(document: dict[str, Any]) -> list[str]:
    """What the cluster role (or diagnose) has not reported yet of the scenarios' object findings."""
    results = document["results"]
    missing = []
    for scenario in SCENARIOS:
        mine = _mine(results, scenario.name)
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
    deadline = time.monotonic() + 45
    document: dict[str, Any] = {}
    missing = ["not polled yet"]
    while time.monotonic() < deadline and missing:
        document = json.loads(get(f"{urls['cluster']}/api/v1/results"))
        missing = cluster_missing(document)
        time.sleep(0.5)
    (output_dir / "cluster-results.json").write_text(json.dumps(document, indent=2))
    assert not missing, missing
    results = document["results"]
    selector = next(r for r in results if r["reason"] == "NoPodsMatchSelector")
    endpoints = next(r for r in results if r["reason"] == "NoEndpoints")
    assert results[endpoints["caused_by"]] == selector  # no pods → no endpoints is one problem, rooted in the selector

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

    diagnosis = subprocess.run(
        [sys.executable, "-m", "exporter", "diagnose", "--kubeconfig", urls["kubeconfig"], "-n", "shop", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert diagnosis.returncode == 1, diagnosis.stderr  # checks fail
    report = json.loads(diagnosis.stdout)
    (output_dir / "diagnose.json").write_text(json.dumps(report, indent=2))
    assert report["schema"] == "lbdoctor.diagnosis/v1"
    assert cluster_missing(report) == []
    central = {(r["check"], r["reason"], r["object"]["name"]) for r in results if r["status"] != "ok"}
    laptop = {(r["check"], r["reason"], r["object"]["name"]) for r in report["results"] if r["status"] != "ok"}
    assert central == laptop  # the cluster role and diagnose tell the same story


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
