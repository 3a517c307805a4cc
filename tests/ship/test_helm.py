"""The Helm chart, proven with the real tools: helm v4 (lint --strict, template, install --dry-run for
NOTES), kubernetes-validate against current Kubernetes schemas, checkov's security scan; and what the
rendered manifests must say (least privilege, the node role's capabilities, the rules and dashboards
taken unchanged from the repository's files)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.kube import resources
from exporter.roles.cluster import WATCHED as CLUSTER_WATCHED
from exporter.roles.node import WATCHED as NODE_WATCHED
from exporter.settings import Settings
from tests.conftest import require_tool
from tests.ship.contract import ROOT

CHART = ROOT / "helm" / "lbdoctor"
TOOLS = ROOT / ".venv-tools" / "bin"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
NAMESPACE = "lbdoctor"
KUBERNETES_VERSIONS = ("1.35.0", "1.37.0")  # EKS's current release, and the newest schemas bundled

READ_ONLY = {"get", "list", "watch"}
# --skip-download: offline, no Prisma Cloud guidelines (with BC_SKIP_MAPPING below).
CHECKOV_FLAGS = ("--framework", "kubernetes", "--output", "json", "--quiet", "--compact", "--skip-download")


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        pytest.skip(f"{path} is missing: scripts/test installs the chart tools into .venv-tools")
    return str(path)


def helm(*arguments: str) -> str:
    done = subprocess.run(
        [tool("helm"), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBECONFIG": "/nonexistent"},  # never a cluster: template and dry runs only
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def render(
    *values: Path, sets: tuple[str, ...] = (), release: str = "release", namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    arguments = ["template", release, str(CHART), "--namespace", namespace]
    for path in values:
        arguments += ["--values", str(path)]
    for assignment in sets:
        arguments += ["--set", assignment]
    return [doc for doc in yaml.safe_load_all(helm(*arguments)) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def container(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return dict(one(docs, kind)["spec"]["template"]["spec"]["containers"][0])


def env(workload: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in workload.get("env", [])}


ALL_FEATURES = ("prometheus.serviceMonitor.enabled=true", "prometheus.rule.enabled=true")


@pytest.fixture(scope="module", name="default")
def _default() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module", name="full")
def _full() -> list[dict[str, Any]]:
    return render(sets=ALL_FEATURES)


# The real tools --------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["default", *[p.stem for p in CI_VALUES]])
def test_helm_lint_strict(values: Path | None) -> None:
    out = helm("lint", "--strict", str(CHART), *(["--values", str(values)] if values else []))
    assert "0 chart(s) failed" in out


def test_the_schema_rejects_typos() -> None:
    done = subprocess.run(
        [tool("helm"), "template", "release", str(CHART), "--set", "node.tolerantions[0].operator=Exists"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": "/nonexistent"},
    )
    assert done.returncode != 0
    assert "additional properties 'tolerantions' not allowed" in done.stderr


def rendered_files(tmp: Path) -> Iterator[tuple[str, Path]]:
    """The chart rendered with every feature on, and with each ci/*-values.yaml, as files."""
    for name, values, sets in [("all-features", [], ALL_FEATURES), *[(p.stem, [p], ()) for p in CI_VALUES]]:
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(render(*values, sets=sets)))
        yield name, path


def test_manifests_validate_against_kubernetes_schemas(tmp_path: Path) -> None:
    validate = tool("kubernetes-validate")
    for name, path in rendered_files(tmp_path):
        for version in KUBERNETES_VERSIONS:
            done = subprocess.run(
                [validate, "--kubernetes-version", version, "--strict", str(path)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            output = done.stdout + done.stderr
            assert done.returncode == 0, f"{name} on {version}:\n{output}"
            # The Prometheus Operator's kinds have no bundled schema; test_monitoring_objects covers them.
            unknown = set(re.findall(r"Couldn't find schema for kind (\w+)", output))
            assert unknown <= {"ServiceMonitor", "PrometheusRule"}, output


def explained_findings() -> dict[str, str]:
    """The checkov ids values.yaml explains, in its block after "Security scan (checkov)"."""
    text = (CHART / "values.yaml").read_text().split("# Security scan (checkov)", 1)[1]
    return dict(re.findall(r"^#   (CKV2?_K8S_\d+)\s+(.+)$", text, flags=re.MULTILINE))


def test_checkov_finds_nothing_unexplained(tmp_path: Path) -> None:
    checkov = tool("checkov")
    failed: dict[str, set[str]] = {}
    for name, path in rendered_files(tmp_path):
        done = subprocess.run(
            [checkov, "--file", str(path), *CHECKOV_FLAGS],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        )
        assert done.returncode in (0, 1), done.stderr[-3000:]
        report = json.loads(done.stdout)
        report = report[0] if isinstance(report, list) else report
        assert report["summary"]["parsing_errors"] == 0, name
        assert report["summary"]["passed"] > 50, name  # it really scanned the manifests
        for check in report["results"]["failed_checks"]:
            failed.setdefault(check["check_id"], set()).add(f"{name}: {check['resource']}")
    explained = explained_findings()
    unexplained = {check: where for check, where in failed.items() if check not in explained}
    assert not unexplained, f"fix these or explain them in values.yaml: {unexplained}"
    stale = set(explained) - set(failed)
    assert not stale, f"values.yaml explains findings checkov no longer reports: {stale}"
    # What remains concerns the node role's host access and choices common to both roles, never RBAC.
    for check, where in failed.items():
        if check in ("CKV_K8S_19", "CKV_K8S_23", "CKV_K8S_40", "CKV_K8S_25", "CKV2_K8S_6"):
            assert all("-node" in place for place in where), (check, where)


def test_notes_say_where_to_look_next() -> None:
    notes = helm(
        "install", "release", str(CHART), "--namespace", NAMESPACE, "--dry-run=client", "--set", ALL_FEATURES[0]
    )
    notes = notes.split("NOTES:", 1)[1]
    assert "kubectl -n lbdoctor port-forward daemonset/release-lbdoctor-node 9850" in notes
    assert "kubectl -n lbdoctor port-forward deployment/release-lbdoctor-cluster" in notes
    assert "docs/iam-policy.json" in notes
    assert "--set prometheus.releaseLabel=" in notes  # the kube-prometheus-stack trap
    assert 'job="lbdoctor"' in notes
    assert "lbdoctor / Overview" in notes


# What the manifests say ------------------------------------------------------------------------


def test_node_role_daemonset(default: list[dict[str, Any]]) -> None:
    daemonset = one(default, "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    agent = container(default, "DaemonSet")
    assert agent["args"] == ["run", "--role", "node"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert env(agent)["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    # The node's address (and loopback for port-forward), not every interface of the node.
    assert env(agent)["HOST_IP"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    assert env(agent)["LBDOCTOR_LISTEN"] == "[$(HOST_IP)]:9850,127.0.0.1:9850"
    assert Settings(node_name="n", listen="[10.0.1.23]:9850,127.0.0.1:9850").listen_addresses == [
        ("10.0.1.23", 9850),
        ("127.0.0.1", 9850),
    ]
    # The agent: an unprivileged user without any capability.
    security = agent["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["seccompProfile"] == pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # The rules: the one container with NET_ADMIN/NET_RAW dumps them where the agent reads them.
    agent_env = env(agent)
    [sidecar] = [c for c in pod["containers"] if c["name"] == "kube-proxy-rules"]
    assert sidecar["args"][:3] == ["dump-rules", "--dir", agent_env["LBDOCTOR_KUBE_PROXY_RULES_DIR"]]
    assert sidecar["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    assert sidecar["securityContext"]["allowPrivilegeEscalation"] is False
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["livenessProbe"]["exec"]["command"][:3] == ["lbdoctor", "dump-rules", "--check"]
    mounts = {c["name"]: {m["name"]: m["mountPath"] for m in c["volumeMounts"]} for c in pod["containers"]}
    assert mounts["lbdoctor"]["rules"] == mounts["kube-proxy-rules"]["rules"] == "/run/lbdoctor/rules"
    assert {v["name"]: v for v in pod["volumes"]}["rules"]["emptyDir"]["sizeLimit"]
    assert "LBDOCTOR_KUBE_PROXY_MODE" not in agent_env
    assert {"operator": "Exists"} in pod["tolerations"]  # every node, tainted ones too
    assert agent["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert agent["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "limits" in agent["resources"] and "cpu" not in agent["resources"]["limits"]
    assert "priorityClassName" not in pod


def test_cluster_role_deployment(default: list[dict[str, Any]]) -> None:
    deployment = one(default, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    worker = container(default, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert worker["args"] == ["run", "--role", "cluster"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 10000
    assert worker["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    assert env(worker)["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env(worker)["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "hostNetwork" not in pod
    assert one(default, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def rules_of(docs: list[dict[str, Any]], kind: str, name: str) -> set[tuple[str, str, str]]:
    """(api group, resource, verb) triples a ClusterRole or Role grants."""
    role = one(docs, kind, name)
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def watched(found: Iterable[resources.Resource]) -> set[tuple[str, str]]:
    """(API group, plural) of watched resources, as RBAC names them."""
    return {
        ("" if r.group_version == "v1" else r.group_version.rpartition("/")[0], r.plural or r.name) for r in found
    }


def test_least_privilege_rbac() -> None:
    docs = render(CHART / "ci" / "irsa-values.yaml")
    node = rules_of(docs, "ClusterRole", "release-lbdoctor-node")
    assert {verb for _, _, verb in node} == READ_ONLY
    # Exactly what each role watches (the code's lists), nothing more.
    assert {(group, resource) for group, resource, _ in node} == watched(NODE_WATCHED)
    cluster = rules_of(docs, "ClusterRole", "release-lbdoctor-cluster")
    assert {verb for _, _, verb in cluster} == READ_ONLY
    cluster_watched = watched(
        r for r in CLUSTER_WATCHED if r is not resources.DEPLOYMENTS  # its Role, in the controller's namespace
    )
    assert {(group, resource) for group, resource, _ in cluster} == cluster_watched
    assert cluster_watched >= watched(NODE_WATCHED) | {("", "events"), ("eks.amazonaws.com", "ingressclassparams")}
    # The controller's Deployment and logs only where it runs; Leases only in lbdoctor's own namespace.
    controller = one(docs, "Role", "release-lbdoctor-controller")
    assert controller["metadata"]["namespace"] == "aws-load-balancer-controller"
    assert rules_of(docs, "Role", "release-lbdoctor-controller") == {("", "pods/log", "get")} | {
        ("apps", "deployments", verb) for verb in READ_ONLY
    }
    lease = one(docs, "Role", "release-lbdoctor-leader-election")
    assert lease["metadata"]["namespace"] == NAMESPACE
    assert rules_of(docs, "Role", "release-lbdoctor-leader-election") == {
        ("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")
    }
    text = yaml.safe_dump_all(docs)
    assert "secrets" not in text and "configmaps" not in text and "'*'" not in text
    for binding in (d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        assert all(subject["kind"] == "ServiceAccount" for subject in binding["subjects"])


def test_irsa_on_the_cluster_role_only() -> None:
    docs = render(CHART / "ci" / "irsa-values.yaml")
    cluster = one(docs, "ServiceAccount", "release-lbdoctor-cluster")
    assert cluster["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/lbdoctor"
    }
    assert "annotations" not in one(docs, "ServiceAccount", "release-lbdoctor-node")["metadata"]
    worker = container(docs, "Deployment")
    assert env(worker)["AWS_REGION"] == "eu-west-1"
    assert env(worker)["LBDOCTOR_CONTROLLER_NAMESPACE"] == "aws-load-balancer-controller"
    assert one(docs, "DaemonSet")["spec"]["template"]["spec"]["priorityClassName"] == "system-node-critical"
    assert container(docs, "DaemonSet")["image"].endswith("@sha256:" + "0123456789abcdef" * 4)


def test_settings_become_lbdoctor_environment_variables() -> None:
    docs = render(CHART / "ci" / "irsa-values.yaml")
    node, cluster = env(container(docs, "DaemonSet")), env(container(docs, "Deployment"))
    assert node["LBDOCTOR_LOG_LEVEL"] == cluster["LBDOCTOR_LOG_LEVEL"] == "debug"
    assert node["LBDOCTOR_PROBE_CONCURRENCY"] == "100" and "LBDOCTOR_PROBE_CONCURRENCY" not in cluster
    assert cluster["LBDOCTOR_DEFAULT_TARGET_TYPE"] == "ip" and "LBDOCTOR_DEFAULT_TARGET_TYPE" not in node


def test_schema_settings_are_lbdoctor_settings() -> None:
    """The chart can only set settings lbdoctor knows (an unknown LBDOCTOR_ variable stops it), with the
    values lbdoctor accepts."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    properties = schema["definitions"]["settings"]["properties"]
    fields = Settings.model_fields
    chart_controlled = {"role", "listen", "node_name", "kubeconfig", "context"}
    chart_controlled |= {"controller_namespace", "lease_namespace", "identity"}  # must match its RBAC
    chart_controlled |= {"node_agent_daemonset", "node_agent_namespace"}  # must name its own DaemonSet
    chart_controlled |= {"kube_proxy_rules_dir"}  # where its sidecar writes
    chart_controlled |= {"web_config_file"}  # web.config / web.existingSecret, mounted by the chart
    assert set(properties) == set(fields) - chart_controlled  # every other setting can be set from values
    for name, rule in properties.items():
        if "enum" in rule:
            assert set(rule["enum"]) == set(typing.get_args(fields[name].annotation)), name


def test_the_roles_find_each_other() -> None:
    """The cluster role reads the node agents' probes; the node agents read the cluster role's AWS settings."""
    docs = render(CHART / "ci" / "irsa-values.yaml")
    node, cluster = env(container(docs, "DaemonSet")), env(container(docs, "Deployment"))
    [service] = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-cluster")]
    assert node["LBDOCTOR_CLUSTER_ROLE_URL"].startswith(f"http://{service['metadata']['name']}.{NAMESPACE}.svc:")
    daemonset = one(docs, "DaemonSet")
    # Found by owner: only pods the DaemonSet controls, in the cluster role's own namespace, are node agents.
    assert cluster["LBDOCTOR_NODE_AGENT_DAEMONSET"] == daemonset["metadata"]["name"]
    assert cluster["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert daemonset["metadata"]["namespace"] == NAMESPACE
    selector = dict(pair.split("=") for pair in cluster["LBDOCTOR_NODE_AGENT_SELECTOR"].split(","))
    assert selector.items() <= daemonset["spec"]["template"]["metadata"]["labels"].items()


def test_existing_accounts_and_no_rbac() -> None:
    docs = render(CHART / "ci" / "existing-accounts-values.yaml")
    assert not [
        d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding")
    ]
    assert (
        one(docs, "DaemonSet", "lbdoctor-node")["spec"]["template"]["spec"]["serviceAccountName"]
        == "lbdoctor-node-managed"
    )
    assert (
        one(docs, "Deployment", "lbdoctor-cluster")["spec"]["template"]["spec"]["serviceAccountName"]
        == "lbdoctor-cluster-managed"
    )
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]  # one replica: nothing to keep


def test_without_the_rules_sidecar_the_kube_proxy_check_is_off() -> None:
    docs = render(sets=("node.kubeProxyRules.enabled=false",))
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["lbdoctor"]
    agent = env(container(docs, "DaemonSet"))
    assert agent["LBDOCTOR_KUBE_PROXY_MODE"] == "off" and "LBDOCTOR_KUBE_PROXY_RULES_DIR" not in agent
    docs = render(sets=("node.kubeProxyRules.enabled=false", "node.settings.kube_proxy_mode=iptables"))
    assert env(container(docs, "DaemonSet"))["LBDOCTOR_KUBE_PROXY_MODE"] == "iptables"  # once, the user's


def test_node_only() -> None:
    docs = render(CHART / "ci" / "node-only-values.yaml")
    assert {d["kind"] for d in docs} == {"DaemonSet", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    service = one(docs, "Service")
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["ports"][0]["port"] == 9860
    assert env(container(docs, "DaemonSet"))["LBDOCTOR_LISTEN"] == "[$(HOST_IP)]:9860,127.0.0.1:9860"


# Monitoring objects ----------------------------------------------------------------------------


def test_service_monitor(full: list[dict[str, Any]]) -> None:
    monitor = one(full, "ServiceMonitor")
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["honorLabels"] is True
    assert endpoint["port"] == "http-metrics" and endpoint["path"] == "/metrics"
    assert {"action": "replace", "targetLabel": "job", "replacement": "lbdoctor"} in endpoint["relabelings"]
    assert "release" not in monitor["metadata"]["labels"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [d for d in full if d["kind"] == "Service"]
    assert len(services) == 2
    for service in services:  # both roles' Services are scraped, on the named port
        assert selector.items() <= service["metadata"]["labels"].items()
        assert service["spec"]["ports"][0]["name"] == "http-metrics"
    docs = render(CHART / "ci" / "kube-prometheus-stack-values.yaml")
    assert one(docs, "ServiceMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert one(docs, "PrometheusRule")["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_hardened_web_face() -> None:
    """web.config becomes a Secret mounted in both roles; the kubelet's probes and the ServiceMonitor
    use https, the ServiceMonitor with the basic-auth password; without it nothing of it is rendered."""
    docs = render(CHART / "ci" / "hardened-web-values.yaml")
    secret = one(docs, "Secret", "release-lbdoctor-web")
    web_config = yaml.safe_load(secret["stringData"]["web-config.yml"])
    assert set(web_config) == {"tls_server_config", "http_server_config", "basic_auth_users"}
    for kind in ("DaemonSet", "Deployment"):
        workload = container(docs, kind)
        pod = one(docs, kind)["spec"]["template"]["spec"]
        assert env(workload)["LBDOCTOR_WEB_CONFIG_FILE"] == "/etc/lbdoctor/web/web-config.yml"
        mounts = {m["name"]: m["mountPath"] for m in workload["volumeMounts"]}
        assert mounts["web-config"] == "/etc/lbdoctor/web" and mounts["web-tls"] == "/etc/lbdoctor/tls"
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert secrets == {
            "web-config": "release-lbdoctor-web",
            "web-tls": "lbdoctor-tls",
            "peer-auth": "lbdoctor-peer",
        }
        # Each role reads the other's API over https, verifying the name the certificate carries, with the
        # basic-auth user kept for them (the password a file, read at each request).
        assert env(workload)["LBDOCTOR_PEER_TLS_CA_FILE"] == "/etc/lbdoctor/tls/ca.crt"
        assert env(workload)["LBDOCTOR_PEER_TLS_SERVER_NAME"] == "lbdoctor.lbdoctor.svc"
        assert env(workload)["LBDOCTOR_PEER_BASIC_AUTH_USERNAME"] == "lbdoctor"
        assert "lbdoctor" in web_config["basic_auth_users"]  # else every read between the roles gets 401
        assert env(workload)["LBDOCTOR_PEER_BASIC_AUTH_PASSWORD_FILE"] == "/etc/lbdoctor/peer/password"
        assert mounts["peer-auth"] == "/etc/lbdoctor/peer"
        for probe in ("livenessProbe", "readinessProbe"):
            assert workload[probe]["httpGet"]["scheme"] == "HTTPS"
    assert env(container(docs, "DaemonSet"))["LBDOCTOR_CLUSTER_ROLE_URL"].startswith(
        "https://release-lbdoctor-cluster."
    )
    assert env(container(docs, "Deployment"))["LBDOCTOR_NODE_AGENT_SCHEME"] == "https"
    endpoint = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https" and endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    assert endpoint["basicAuth"]["password"] == {"name": "lbdoctor-scrape", "key": "password"}
    # The file the chart writes is one lbdoctor itself accepts (certificates aside).
    from exporter.web.webconfig import WebConfigError
    from exporter.web.webconfig import load as load_web_config

    path = ROOT / "test-output" / "hardened-web-config.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(secret["stringData"]["web-config.yml"])
    with pytest.raises(WebConfigError, match="tls_server_config: No such file"):
        load_web_config(str(path))
    mtls = render(sets=("web.existingSecret=mine", "web.tls=true", "web.clientCertificates=true"))
    agent = container(mtls, "DaemonSet")
    assert agent["livenessProbe"]["tcpSocket"] == {"port": "http-metrics"} and "httpGet" not in agent["livenessProbe"]
    assert "LBDOCTOR_PEER_TLS_CERT_FILE" not in env(agent)  # no tlsSecret: no client certificate to present
    mtls = render(sets=("web.existingSecret=mine", "web.tls=true", "web.tlsSecret=certs", "web.clientCertificates=true"))
    agent = container(mtls, "DaemonSet")
    assert env(agent)["LBDOCTOR_PEER_TLS_CERT_FILE"] == "/etc/lbdoctor/tls/tls.crt"
    assert env(agent)["LBDOCTOR_PEER_TLS_KEY_FILE"] == "/etc/lbdoctor/tls/tls.key"
    assert not [d for d in mtls if d["kind"] == "Secret"]
    plain = render(sets=ALL_FEATURES)
    assert not [d for d in plain if d["kind"] == "Secret"]
    assert "LBDOCTOR_WEB_CONFIG_FILE" not in env(container(plain, "DaemonSet"))
    assert not [name for name in env(container(plain, "DaemonSet")) if name.startswith("LBDOCTOR_PEER_")]
    assert env(container(plain, "DaemonSet"))["LBDOCTOR_CLUSTER_ROLE_URL"].startswith("http://")
    assert one(plain, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"] == "http"
    assert container(plain, "DaemonSet")["readinessProbe"]["httpGet"]["scheme"] == "HTTP"


def test_prometheus_rule_is_the_rule_file_unchanged(full: list[dict[str, Any]]) -> None:
    rule = one(full, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((ROOT / "alerts" / "lbdoctor.rules.yaml").read_text())


def test_prometheus_rule_options_keep_rules_valid(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    docs = render(CHART / "ci" / "kube-prometheus-stack-values.yaml")
    spec = one(docs, "PrometheusRule")["spec"]
    rules = [r for group in spec["groups"] for r in group["rules"]]
    text = yaml.safe_dump(spec)
    assert 'job="lbdoctor"' not in text and text.count('job="lbdoctor-eks"') >= len(rules)
    assert "LbDoctorTargetWillBeUnhealthy" not in text
    assert all(r["labels"]["team"] == "platform" and r["labels"]["severity"] for r in rules)
    assert all(
        r["annotations"]["runbook_url"].startswith("https://wiki.example.com/lbdoctor/runbooks/Lb") for r in rules
    )
    assert "{{ $labels.namespace }}" in text  # Prometheus's templates reach it untouched by Helm
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboards_as_configmaps_for_the_grafana_sidecar(default: list[dict[str, Any]]) -> None:
    maps = [d for d in default if d["kind"] == "ConfigMap"]
    files = {path.name: path.read_text() for path in (ROOT / "dashboards").glob("*.json")}
    assert len(maps) == len(files) == 5
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((name, content),) = config_map["data"].items()
        assert content == files[name].rstrip("\n")  # the committed file, byte for byte
        json.loads(content)
    docs = render(CHART / "ci" / "kube-prometheus-stack-values.yaml")
    for config_map in (d for d in docs if d["kind"] == "ConfigMap"):
        assert config_map["metadata"]["namespace"] == "monitoring"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "lbdoctor"}


def test_chart_values_named_in_the_docs_exist() -> None:
    """README and the runbook pages tell people which value to set: each one must be a real key."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    texts = [ROOT / "README.md", *(ROOT / "docs" / "runbooks").glob("*.md"), CHART / "templates" / "NOTES.txt"]
    named = set()
    for path in texts:
        named |= set(
            re.findall(
                r"\b((?:image|node|clusterRole|prometheus|grafana|rbac|service)(?:\.[A-Za-z]+)+)(?![\w./-])",
                path.read_text(),
            )
        )
    assert "clusterRole.aws.roleArn" in named
    for dotted in named:
        node: Any = values
        for key in dotted.split("."):
            assert isinstance(node, dict) and key in node, f"{dotted} is not a chart value"
            node = node[key]
