"""``lbdoctor diagnose`` runs the AWS steps once when it has credentials and a cluster name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter import diagnose
from exporter.diagnose_output import table
from exporter.kube.client import kubeconfig_cluster
from tests.aws.faults import patch_target_health
from tests.aws.world import CLUSTER, POD_IPS, REGION, World


async def test_aws_results_join_the_diagnosis(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    patch_target_health(monkeypatch, {POD_IPS["web-1"]: ("unhealthy", "Target.Timeout", "Request timed out")})
    results, not_run = await diagnose.aws_steps(world.snapshot(), diagnose.Options(cluster_name=CLUSTER, region=REGION))
    assert not_run is None
    checks = {r.check.value for r in results}
    assert {"elb_target_health", "security_groups", "network"} <= checks
    timeout = [r for r in results if r.reason is not None and r.reason.value == "Target.Timeout"]
    assert timeout and timeout[0].target is not None and timeout[0].target.pod == "web-1"


async def test_without_credentials_the_aws_steps_say_why(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    results, not_run = await diagnose.aws_steps(world.snapshot(), diagnose.Options(cluster_name=CLUSTER, region=REGION))
    assert results == ()
    assert not_run is not None and "no AWS credentials" in not_run


async def test_without_a_cluster_name_the_aws_steps_say_how_to_give_it(world: World) -> None:
    results, not_run = await diagnose.aws_steps(world.snapshot(), diagnose.Options())
    assert results == ()
    assert not_run is not None and "--cluster-name" in not_run


async def test_the_cluster_name_comes_from_an_eks_kubeconfig_context(world: World, tmp_path: Path) -> None:
    """No --cluster-name: an `aws eks update-kubeconfig` context's ARN names the cluster and its Region."""
    arn = f"arn:aws:eks:{REGION}:111122223333:cluster/{CLUSTER}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "prod",
                "clusters": [{"name": arn, "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": arn, "user": {"token": "t"}}],
                "contexts": [{"name": "prod", "context": {"cluster": arn, "user": arn}}],
            }
        )
    )
    assert kubeconfig_cluster(str(kubeconfig), None) == arn
    results, not_run = await diagnose.aws_steps(world.snapshot(), diagnose.Options(kubeconfig=str(kubeconfig)))
    assert not_run is None
    assert any(r.check.value == "elb_target_health" for r in results)


def test_the_table_names_what_the_aws_steps_need(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    table((), world.snapshot(), False, {"network": "no AWS credentials found (AWS_PROFILE, …)"})
    assert "no AWS credentials found" in capsys.readouterr().out
