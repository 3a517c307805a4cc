"""The chart's containers accept the environment a real pod gets.

The first install on a real cluster crash-looped: Kubernetes gives every container variables for the
Services of its namespace (``LBDOCTOR_CLUSTER_SERVICE_HOST``, ``LBDOCTOR_CLUSTER_PORT``, …) and settings
took every ``LBDOCTOR_*`` variable for a setting. Here each container of the rendered chart gets the
environment the kubelet builds (tests/kubelet.py), service links forced on as the worst case, and its
own command with ``--check-config`` must accept it: ``lbdoctor run …`` (the node agent, the cluster role)
validates its settings, ``lbdoctor dump-rules …`` (the node agents' kube-proxy-rules sidecar) its flags,
as do the exec probes' commands. tests/realkube starts the same containers for real.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.kubelet import PodFacts, container_env, pod_templates
from tests.ship.test_helm import render

RELEASES = (("lbdoctor", "lbdoctor"), ("ops", "monitoring"))  # the README's command, and another


def with_cluster_ips(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """The rendered Services as the API server stores them (a cluster IP each unless headless), the
    master Service, and a Service of the user's named "lbdoctor" in the same namespace."""
    services: list[dict[str, Any]] = []
    for number, doc in enumerate(d for d in docs if d["kind"] == "Service"):
        spec = dict(doc["spec"])
        spec.setdefault("clusterIP", f"10.100.0.{number + 10}")
        services.append({"metadata": doc["metadata"], "spec": spec})
    services.append(
        {
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "spec": {"clusterIP": "10.100.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
        }
    )
    services.append(
        {
            "metadata": {"name": "lbdoctor", "namespace": namespace},
            "spec": {
                "clusterIP": "fd00:10:100::9",
                "ports": [{"port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}],
            },
        }
    )
    return services


def check_config(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``lbdoctor ARGS --check-config`` with exactly this environment (and a PATH to find the tools)."""
    return subprocess.Popen(
        [sys.executable, "-m", "exporter", *argv, "--check-config"],
        env={**env, "PATH": os.environ["PATH"], "HOME": "/"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(("release", "namespace"), RELEASES)
def test_every_container_accepts_the_environment_the_kubelet_builds(release: str, namespace: str) -> None:
    docs = render(release=release, namespace=namespace)
    services = with_cluster_ips(docs, namespace)
    templates = pod_templates(docs)
    assert sorted(t.kind for t in templates) == ["DaemonSet", "Deployment"]
    runs = []
    for template in templates:
        assert template.spec["enableServiceLinks"] is False  # the chart asks for no service links...
        facts = PodFacts(
            name=template.pod_name(1),
            namespace=namespace,
            uid="0b5e6a56-8d43-4d0e-9d5c-2b1f3c4d5e6f",
            node_name="ip-10-0-1-23.eu-west-1.compute.internal",
            service_account=template.service_account,
            pod_ip="10.0.1.23" if template.spec.get("hostNetwork") else "10.0.1.57",
            host_ip="10.0.1.23",
            labels=template.labels,
        )
        for container in template.containers:
            # ... and settings must survive them anyway (a kustomize patch, an older chart, a fork).
            env = container_env(container, facts, services, enable_service_links=True)
            if release == "lbdoctor":
                assert env["LBDOCTOR_CLUSTER_PORT"] == "tcp://10.100.0.11:9850"  # the variables that crashed it
            assert env["KUBERNETES_SERVICE_HOST"] == "10.100.0.1"
            assert env["LBDOCTOR_PORT"] == "tcp://[fd00:10:100::9]:80"
            where = f"{template.kind} {template.name}, container {container['name']}"
            assert container.get("command") is None, where  # the image's entrypoint: lbdoctor
            runs.append((where, check_config(container["args"], env)))
            for kind in ("livenessProbe", "readinessProbe"):
                command = (container.get(kind) or {}).get("exec", {}).get("command")
                if command:  # the kubelet runs it in the container, with the container's environment
                    assert command[0] == "lbdoctor", (where, kind, command)
                    runs.append((f"{where}, {kind}", check_config(command[1:], env)))
    checked = {}
    for where, process in runs:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"{where}: {err.strip()}"
        checked[where] = out.strip()
    # What each accepted, in its own words: the settings the daemons start with, the sidecar's flags.
    node, cluster = (f"{t.kind} {t.name}" for t in sorted(templates, key=lambda t: t.kind != "DaemonSet"))
    sidecar = "lbdoctor: dump-rules flags are valid (dir /run/lbdoctor/rules, interval 30 s, timeout 30 s)"
    assert checked == {
        f"{node}, container lbdoctor": "lbdoctor: settings are valid (role node, listen [10.0.1.23]:9850,127.0.0.1:9850)",
        f"{node}, container kube-proxy-rules": sidecar,
        f"{node}, container kube-proxy-rules, livenessProbe": sidecar,
        f"{node}, container kube-proxy-rules, readinessProbe": sidecar,
        f"{cluster}, container lbdoctor": "lbdoctor: settings are valid (role cluster, listen 0.0.0.0:9850)",
    }


def test_the_pod_harness_maps_only_the_listen_forms_it_knows() -> None:
    """tests/realkube/pods.py serves the chart's listen addresses on per-node loopback addresses; a form it
    does not know, or a host-network pod on every interface, fails instead of being mapped away."""
    from tests.realkube.pods import listen_mapping

    node = {"host_network": True, "pod_ip": "127.100.0.5", "localhost": "127.100.0.6", "port": 9850}
    assert listen_mapping("[$(HOST_IP)]:9850,127.0.0.1:9850", **node) == [
        ("[$(HOST_IP)]:9850", "127.100.0.5", 9850),
        ("127.0.0.1:9850", "127.100.0.6", 9850),
    ]
    pod = {**node, "host_network": False}
    assert listen_mapping("0.0.0.0:9850", **pod) == [("0.0.0.0:9850", "127.100.0.5", 9850)]
    for raw, settings, why in (
        ("0.0.0.0:9850", node, "every interface of the node"),
        ("[$(HOST_IP)]:9851,127.0.0.1:9851", node, "port 9850 expected"),
        ("[$(POD_IP)]:9850", node, "not modelled"),
        ("[$(HOST_IP)]:9850", pod, "not modelled"),
        ("10.0.0.1:9850", pod, "not modelled"),
    ):
        with pytest.raises(AssertionError, match=re.escape(why)):
            listen_mapping(raw, **settings)  # type: ignore[arg-type]
