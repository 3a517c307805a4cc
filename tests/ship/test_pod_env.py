"""The chart's containers accept the environment a real pod gets.

The first install on a real cluster crash-looped: Kubernetes gives every container variables for the
Services of its namespace (``LBDOCTOR_CLUSTER_SERVICE_HOST``, ``LBDOCTOR_CLUSTER_PORT``, …) and settings
took every ``LBDOCTOR_*`` variable for a setting. Here each container of the rendered chart gets the
environment the kubelet builds (tests/kubelet.py), service links forced on as the worst case, and
``lbdoctor run … --check-config`` must accept it. tests/realkube starts the same containers for real.
"""

from __future__ import annotations

import os
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


@pytest.mark.parametrize(("release", "namespace"), RELEASES)
def test_every_container_accepts_the_environment_the_kubelet_builds(release: str, namespace: str) -> None:
    docs = render(release=release, namespace=namespace)
    services = with_cluster_ips(docs, namespace)
    templates = pod_templates(docs)
    assert sorted(t.kind for t in templates) == ["DaemonSet", "Deployment"]
    runs = []
    for template in templates:
        assert template.spec["enableServiceLinks"] is False  # the chart asks for no service links...
        container = template.container
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
        # ... and settings must survive them anyway (a kustomize patch, an older chart, a fork).
        env = container_env(container, facts, services, enable_service_links=True)
        if release == "lbdoctor":
            assert env["LBDOCTOR_CLUSTER_PORT"] == "tcp://10.100.0.11:9850"  # the variables that crashed it
        assert env["KUBERNETES_SERVICE_HOST"] == "10.100.0.1" and env["LBDOCTOR_PORT"] == "tcp://[fd00:10:100::9]:80"
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", *container["args"], "--check-config"],
            env={**env, "PATH": os.environ["PATH"], "HOME": "/"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        runs.append((template.name, process))
    for name, process in runs:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"{name}: {err.strip()}"
        assert "settings are valid" in out and "listen 0.0.0.0:9850" in out
