"""Where Go is missing (no real kube-apiserver), the chart's pods still start as the kubelet starts them
(tests/realkube/pods.py) and become ready, against the fake API server behind TLS. The fake has no RBAC:
tests/realkube/test_chart_pods.py proves permissions against the real one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.realkube import fake
from tests.realkube.conftest import install
from tests.realkube.test_chart_pods import assert_started_as_specified

pytestmark = pytest.mark.slow


def test_the_chart_pods_become_ready_against_the_fake_api_server(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("starting the chart's pods as the kubelet does needs root (unshare --mount, setpriv)")
    tmp_path.chmod(0o755)
    with fake.running(tmp_path / "api") as cluster:
        release = install(cluster, "lbdoctor", "lbdoctor", tmp_path / "pods")
        try:
            cluster_role = release.start("Deployment")
            cluster_role.wait_ready(timeout=60)
            agent = release.start("DaemonSet")
            agent.wait_ready(timeout=60)
            for pod in (cluster_role, agent):
                assert_started_as_specified(release, pod)
        finally:
            release.stop_all()
