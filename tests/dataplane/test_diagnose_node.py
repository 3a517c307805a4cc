"""``lbdoctor diagnose -A --node NAME --iptables-save-file FILE``: a saved dump against the cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter import diagnose
from exporter.fakeapi import FakeApiServer
from tests.dataplane.generator import NODE, NODE_IP, OTHER_NODE, OTHER_NODE_IP, Ep, Svc, iptables_save, with_fault

SERVICES = [
    Svc("web", "172.20.0.10", (Ep("10.244.1.5", pod="web-1"), Ep("10.244.1.7", pod="web-2")), node_port=30080),
    Svc("api", "172.20.0.11", (Ep("10.244.1.9", pod="api-1"),), node_port=30081),
]


def seed(api: FakeApiServer) -> None:
    """The generator's Services as API JSON, so the real client lists them."""
    for name, address in ((NODE, NODE_IP), (OTHER_NODE, OTHER_NODE_IP)):
        api.state.apply(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": address}],
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
    for svc in SERVICES:
        api.state.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": svc.name, "namespace": svc.namespace},
                "spec": {
                    "type": "NodePort",
                    "clusterIP": svc.cluster_ip,
                    "clusterIPs": [svc.cluster_ip],
                    "selector": {"app": svc.name},
                    "ports": [
                        {
                            "name": svc.port_name,
                            "port": svc.port,
                            "targetPort": svc.target_port,
                            "protocol": svc.protocol,
                            "nodePort": svc.node_port,
                        }
                    ],
                },
            }
        )
        endpoints: list[dict[str, Any]] = [
            {
                "addresses": [e.ip],
                "conditions": {"ready": e.ready, "serving": e.serving, "terminating": e.terminating},
                "nodeName": e.node,
                "targetRef": {"kind": "Pod", "name": e.pod, "namespace": svc.namespace},
            }
            for e in svc.endpoints
        ]
        api.state.apply(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{svc.name}-abcde",
                    "namespace": svc.namespace,
                    "labels": {"kubernetes.io/service-name": svc.name},
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [{"name": svc.port_name, "port": svc.target_port, "protocol": svc.protocol}],
            }
        )


async def run(api: FakeApiServer, tmp_path: Path, dump: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    saved = tmp_path / "rules.txt"
    saved.write_text(dump)
    options = diagnose.Options(
        kubeconfig=str(api.write_kubeconfig(tmp_path / "k")),
        all_namespaces=True,
        output="json",
        node=NODE,
        iptables_save_file=str(saved),
    )
    await diagnose.run(options)
    return dict(json.loads(capsys.readouterr().out))


async def test_healthy_dump_reports_no_kube_proxy_problem(
    api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(api)
    report = await run(api, tmp_path, iptables_save(SERVICES), capsys)
    mine = [r for r in report["results"] if r["check"] == "kube_proxy"]
    assert mine, "the dump was not analysed"
    assert all(r["status"] == "ok" for r in mine), [r["message"] for r in mine if r["status"] != "ok"]


async def test_stale_endpoint_in_a_saved_dump(
    api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(api)
    dump = iptables_save(with_fault(SERVICES, "web", programmed=("10.244.1.5", "10.244.1.99")))
    report = await run(api, tmp_path, dump, capsys)
    stale = [r for r in report["results"] if r["reason"] == "StaleEndpointRules"]
    assert stale and stale[0]["object"]["name"] == "web" and "10.244.1.99" in stale[0]["message"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-A", "--node", NODE], "needs the node's saved rules"),
        (["-n", "shop", "--node", NODE, "--iptables-save-file", "/etc/hostname"], "add -A"),
        (["-A", "--iptables-save-file", "/etc/hostname"], "need --node NAME"),
        (["-A", "--node", NODE, "--iptables-save-file", "/nonexistent"], "cannot read /nonexistent"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    from tests.test_diagnose import lbdoctor

    result = lbdoctor("diagnose", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
