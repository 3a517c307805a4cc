"""End to end with a real Prometheus: it scrapes `lbdoctor demo` with the shipped rules loaded.

Proves that the alerts for the demo's seeded faults fire (and reach Alertmanager's webhook), that no
alert ever fires for the demo's healthy services, and that every query of every shipped dashboard
returns data. Only where a part of the demo cannot run (its kube-proxy namespace needs root; its AWS
needs moto) are the queries over it pending (tests/ship/contract.py); they must still parse.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from exporter.demo.cluster import CONTROLLER_NAME, CONTROLLER_NAMESPACE, NODE, SCENARIOS
from tests.conftest import require_tool
from tests.ship.conftest import Demo
from tests.ship.contract import ROOT, pending_because, unshown
from tests.ship.stack import Alertmanager, Prometheus, Webhook, stop
from tests.test_demo import WITH_AWS, WITH_KUBE_PROXY

pytestmark = pytest.mark.slow

RULES = ROOT / "alerts" / "lbdoctor.rules.yaml"
# Production `for:` durations are minutes; the test copy waits 5 s so the run stays short. The
# expressions, labels and annotations are the shipped ones, unchanged.
TEST_FOR = "5s"

HEALTHY = {s.name for s in SCENARIOS if s.expect_reason is None and s.cluster_reason is None and not s.aws}
KUBE_PROXY = "kube-proxy"  # the node's kube-proxy (the demo's network namespace, as root)

# What each seeded fault of the demo (exporter/demo/cluster.py) must raise: alert name and the labels
# that identify it. Faults a scenario may raise besides (a flapping target is sometimes simply failing)
# are in ALSO_ALLOWED.
EXPECTED: dict[str, list[tuple[str, dict[str, str]]]] = {
    "catalog": [
        ("LbDoctorHealthCheckFailing", {"service": "catalog", "reason": "ResponseCodeMismatch"}),
        ("LbDoctorNoHealthyTargets", {"service": "catalog", "lb": "alb"}),
    ],
    "orders": [
        ("LbDoctorHealthCheckFailing", {"service": "orders", "reason": "ConnectionRefused"}),
        ("LbDoctorNoHealthyTargets", {"service": "orders", "lb": "nlb"}),
    ],
    "search": [
        ("LbDoctorHealthCheckFailing", {"service": "search", "reason": "Timeout"}),
        ("LbDoctorNoHealthyTargets", {"service": "search", "lb": "alb"}),
    ],
    "recommendations": [
        ("LbDoctorTargetFlapping", {"service": "recommendations", "pod": "recommendations-4d3e2-jklmn"}),
    ],
    "checkout": [
        (
            "LbDoctorRunbookCheckFailing",
            {"check": "pod_status", "name": "checkout-2e1f0-tuvwx", "reason": "CrashLoopBackOff"},
        ),
        ("LbDoctorHealthCheckFailing", {"pod": "checkout-2e1f0-tuvwx", "reason": "ConnectionRefused"}),
    ],
    "inventory": [
        (
            "LbDoctorRunbookCheckFailing",
            {"check": "service_annotations", "name": "inventory", "reason": "PathIgnoredForTcpHealthCheck"},
        ),
    ],
    # The cluster role's findings.
    "alb-instance": [
        ("LbDoctorRunbookCheckFailing", {"check": "selector", "name": "alb-instance", "reason": "NoPodsMatchSelector"}),
        ("LbDoctorServiceNoReadyEndpoints", {"kind": "Service", "name": "alb-instance", "reason": "NoEndpoints"}),
    ],
    "nlb-local": [
        (
            "LbDoctorRunbookCheckFailing",
            {"check": "traffic_policy", "name": "nlb-local", "reason": "ExternalTrafficPolicyLocal"},
        ),
    ],
    "legacy-api": [
        (
            "LbDoctorRunbookCheckFailing",
            {"check": "target_port", "name": "legacy-api", "reason": "TargetPortNotExposed"},
        ),
        ("LbDoctorHealthCheckFailing", {"service": "legacy-api", "reason": "ConnectionRefused"}),
        ("LbDoctorNoHealthyTargets", {"service": "legacy-api", "lb": "nlb"}),
    ],
    "coupons": [
        (
            "LbDoctorRunbookCheckFailing",
            {"check": "ingress_annotations", "name": "coupons", "reason": "InvalidSuccessCodes"},
        ),
    ],
    # Gateway API: the merge lost the default's path, so / answers 404 and the route's target fails.
    "ratings": [
        (
            "LbDoctorRunbookCheckFailing",
            {"check": "gateway_config", "kind": "HTTPRoute", "name": "ratings", "reason": "HealthCheckConfigReplacesDefault"},
        ),
        ("LbDoctorHealthCheckFailing", {"service": "ratings", "reason": "ResponseCodeMismatch", "path": "/"}),
        ("LbDoctorNoHealthyTargets", {"service": "ratings", "lb": "alb"}),
    ],
    "wishlist": [
        (
            "LbDoctorRunbookCheckFailing",
            {"check": "ingress_annotations", "name": "wishlist", "reason": "NotSupportedByAutoMode"},
        ),
    ],
    # gRPC: status 12 where 0 is expected.
    "pricing": [
        ("LbDoctorHealthCheckFailing", {"service": "pricing", "reason": "ResponseCodeMismatch", "path": "/AWS.ALB/healthcheck"}),
        ("LbDoctorNoHealthyTargets", {"service": "pricing", "lb": "alb"}),
    ],
    # The rollout window's configuration findings are shown, not paged: no alert.
    "notifications": [],
    "reviews": [
        (
            "LbDoctorRunbookCheckFailing",
            {"check": "pod_status", "name": "reviews-7c6b5-vwxyz", "reason": "ReadinessGateNotReady"},
        ),
        ("LbDoctorServiceNoReadyEndpoints", {"kind": "Service", "name": "reviews", "reason": "NoReadyEndpoints"}),
    ],
    # Not a service: the AWS Load Balancer Controller, whose logs show AccessDenied.
    CONTROLLER_NAME: [
        ("LbDoctorControllerAccessDenied", {"namespace": CONTROLLER_NAMESPACE, "name": CONTROLLER_NAME}),
    ],
}
# What the load balancers say, with the demo's AWS: every target group with an unhealthy target, and the
# network-path findings that explain two of them.
if WITH_AWS:
    for _scenario in SCENARIOS:
        if any(check == "elb_target_health" for check, _ in _scenario.aws):
            EXPECTED.setdefault(_scenario.name, []).append(("LbDoctorElbTargetUnhealthy", {"service": _scenario.name}))
    EXPECTED["reviews"].append(
        ("LbDoctorRunbookCheckFailing", {"check": "security_groups", "name": "reviews", "reason": "HealthCheckPortNotAllowed"})
    )
    EXPECTED["ledger"].append(
        ("LbDoctorRunbookCheckFailing", {"check": "network", "name": "ledger", "reason": "NaclDeniesHealthCheck"})
    )
    EXPECTED["notifications"].append(
        ("LbDoctorTargetTerminatedWhileRegistered", {"kind": "Service", "name": "notifications"})
    )
# kube-proxy's rules, as root: one stale endpoint and one missing Service on the demo's node.
if WITH_KUBE_PROXY:
    EXPECTED[KUBE_PROXY] = [("LbDoctorKubeProxyRulesStale", {"node": NODE})]
# A flapping target also fails now and then: while failing, it is announced early, and it may stay
# unhealthy longer than the test's 5 s `for:` (at the load balancer too).
ALSO_ALLOWED = {
    "recommendations": {
        "LbDoctorTargetWillBeUnhealthy",
        "LbDoctorHealthCheckFailing",
        "LbDoctorNoHealthyTargets",
        "LbDoctorElbTargetUnhealthy",
    },
}
# The early warning lasts one health-check interval per failing spell; it must have fired at least
# once for the flapping target (checked in Prometheus's ALERTS history).
EARLY_WARNING = ("LbDoctorTargetWillBeUnhealthy", {"service": "recommendations"})

VARIABLES = {
    **dict.fromkeys(("cluster", "namespace", "service", "node", "job", "instance"), ".*"),
    "__rate_interval": "30s",
    "__range": "10m",
    "__interval": "15s",
}


def rules_with_short_for() -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load(RULES.read_text())
    copied = copy.deepcopy(rules)
    for group in copied["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = TEST_FOR
    return copied


def matches(alert: dict[str, Any], name: str, labels: dict[str, str]) -> bool:
    return alert["labels"].get("alertname") == name and all(alert["labels"].get(k) == v for k, v in labels.items())


def owner(labels: dict[str, str]) -> str | None:
    """The demo scenario an alert belongs to (services are named after them, pods start with them)."""
    if labels.get("name") == CONTROLLER_NAME:
        return CONTROLLER_NAME
    if labels.get("alertname") == "LbDoctorKubeProxyRulesStale":
        return KUBE_PROXY
    for scenario in SCENARIOS:
        for key in ("service", "name", "pod"):
            value = labels.get(key, "")
            if value == scenario.name or value.startswith(scenario.name + "-"):
                return scenario.name
    return None


@pytest.fixture(scope="module", name="prometheus")
def _prometheus(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, Webhook, float]]:
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    workdir = tmp_path_factory.mktemp("prometheus")
    webhook = Webhook()
    webhook.start()
    alertmanager = Alertmanager(workdir, webhook.port)
    started = time.time()
    prometheus = Prometheus(workdir, demo.addresses, alertmanager.port)
    try:
        prometheus.wait_scraped()
        rules = rules_with_short_for()
        assert prometheus.load_rules(rules) == sum(len(group["rules"]) for group in rules["groups"])
        yield prometheus, webhook, started
    finally:
        stop(prometheus.process)
        stop(alertmanager.process)
        webhook.stop()
        output = ROOT / "test-output" / "e2e-prometheus"
        shutil.rmtree(output, ignore_errors=True)
        shutil.copytree(workdir, output, ignore=shutil.ignore_patterns("*-data"))


def wait_for_alerts(prometheus: Prometheus, timeout: float = 150) -> list[dict[str, Any]]:
    """Poll until every expected alert fires (the flapping one needs four state changes: about a minute)."""
    deadline = time.monotonic() + timeout
    missing: list[str] = ["not polled yet"]
    firing: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        firing = prometheus.firing()
        missing = [
            f"{name} {labels}"
            for expected in EXPECTED.values()
            for name, labels in expected
            if not any(matches(alert, name, labels) for alert in firing)
        ]
        if not missing:
            return firing
        time.sleep(1)
    raise AssertionError(f"alerts that never fired: {missing}; firing: {[a['labels'] for a in firing]}")


def test_every_seeded_fault_has_an_expectation() -> None:
    faulty = {
        s.name for s in SCENARIOS if s.expect_reason is not None or s.cluster_reason is not None or (WITH_AWS and s.aws)
    }
    extra = {CONTROLLER_NAME} | ({KUBE_PROXY} if WITH_KUBE_PROXY else set())
    assert faulty | extra == set(EXPECTED), "a demo scenario was added or removed: say what it raises"


def test_seeded_faults_fire_their_alerts_and_healthy_services_none(
    prometheus: tuple[Prometheus, Webhook, float],
) -> None:
    server, _, started = prometheus
    firing = wait_for_alerts(server)

    # Everything that ever fired during the run (ALERTS history), not just what fires now.
    window = f"{int(time.time() - started) + 60}s"
    history = server.query(f'max_over_time(ALERTS{{alertstate="firing"}}[{window}])')
    ever = [series["metric"] for series in history] + [alert["labels"] for alert in firing]
    unexpected = []
    for labels in ever:
        scenario = owner(labels)
        allowed = {name for name, _ in EXPECTED.get(scenario or "", [])} | ALSO_ALLOWED.get(scenario or "", set())
        if labels["alertname"] not in allowed:
            unexpected.append(labels)
    assert not unexpected, f"alerts fired that no seeded fault explains: {unexpected}"
    assert not [labels for labels in ever if owner(labels) in HEALTHY]

    name, labels = EARLY_WARNING
    assert any(
        labels_.get("alertname") == name and all(labels_.get(k) == v for k, v in labels.items()) for labels_ in ever
    ), f"{name} never fired for the flapping target"

    # Annotations are rendered for real: the description names the reason, the runbook page exists.
    search = next(a for a in firing if matches(a, "LbDoctorHealthCheckFailing", {"service": "search"}))
    assert "with Timeout for 5 minutes" in search["annotations"]["description"]
    page = search["annotations"]["runbook_url"].rsplit("/docs/runbooks/", 1)[1]
    assert (ROOT / "docs" / "runbooks" / page).is_file()


def test_alertmanager_delivers_the_page_to_the_webhook(prometheus: tuple[Prometheus, Webhook, float]) -> None:
    server, webhook, _ = prometheus
    wait_for_alerts(server)
    deadline = time.monotonic() + 60
    critical: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not critical:
        critical = [
            alert
            for payload in webhook.received()
            for alert in payload["alerts"]
            if alert["status"] == "firing" and alert["labels"].get("severity") == "critical"
        ]
        time.sleep(0.5)
    assert critical, f"no critical alert reached the webhook; got {len(webhook.received())} payloads"
    page = next(a for a in critical if a["labels"]["alertname"] == "LbDoctorNoHealthyTargets")
    assert page["labels"]["namespace"] == "shop"
    assert page["annotations"]["summary"] == "No target of a load-balanced service passes its health check."
    assert page["annotations"]["runbook_url"].endswith("/docs/runbooks/LbDoctorNoHealthyTargets.md")


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expression) for every query of every dashboard."""
    found = []
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            found.extend((path.name, panel["title"], target["expr"]) for target in panel.get("targets", []))
    return found


def variable_queries() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        for variable in json.loads(path.read_text())["templating"]["list"]:
            if variable["type"] == "query":
                found.append((path.name, variable["name"], variable["query"]))
    return found


def substitute(expr: str) -> str:
    """Grafana's variables as a person's "All" selection: every label value (.*), fixed intervals.
    Anything else that looks like a variable ($1 in label_replace) is not one and stays."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: VARIABLES.get(m.group(1), m.group(0)), expr)


def test_every_dashboard_query_returns_data(prometheus: tuple[Prometheus, Webhook, float], demo: Demo) -> None:
    server, _, _ = prometheus
    wait_for_alerts(server)  # by then every fault has shown, the flapping target included
    exposition = demo.exposition()
    empty, pending = [], []
    for dashboard, title, expr in dashboard_queries():
        result = server.query(substitute(expr))  # raises when Prometheus cannot parse it
        reason = pending_because(expr, exposition)
        if reason is not None:
            pending.append(f"{dashboard} / {title}: {reason}")
            continue
        if not result:
            empty.append(f"{dashboard} / {title}: {substitute(expr)}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
    # Every panel has data, unless a part of the demo cannot run here (kube-proxy's namespace needs root).
    print("pending dashboard queries:\n" + "\n".join(pending))
    assert not pending or unshown(), pending


def test_dashboard_variables_list_values(prometheus: tuple[Prometheus, Webhook, float], demo: Demo) -> None:
    """label_values(selector, label) as Grafana runs it (the series API), with the same pending rules."""
    server, _, _ = prometheus
    exposition = demo.exposition()
    empty = []
    for dashboard, name, query in variable_queries():
        found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert found, f"{dashboard} ${name}: not a label_values() query: {query}"
        selector, label = substitute(found.group(1)), found.group(2)
        series = server.api("series", **{"match[]": selector, "start": str(time.time() - 600)})
        values = {s[label] for s in series if label in s}
        # A single-cluster Prometheus has no `cluster` label: the variable is empty and "All" (.*) applies.
        if not values and label != "cluster" and pending_because(selector, exposition) is None:
            empty.append(f"{dashboard} ${name}: {query}")
    assert not empty, "dashboard variables without values:\n" + "\n".join(empty)
