"""The AWS SDK stays in the cluster role: what the node role and the renderers import is free of it."""

from __future__ import annotations

import subprocess
import sys

from exporter.aws.config import AwsSettings
from exporter.settings import load


def test_node_side_modules_do_not_import_boto3() -> None:
    code = (
        "import sys\n"
        "import exporter.roles.node, exporter.lb.aws_settings, exporter.aws.metrics, exporter.checks.aws_round\n"
        "import exporter.aws.detect, exporter.metrics.bindings, exporter.web.server\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore'))\n"
        "assert not leaked, leaked\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_aws_settings_come_from_the_daemon_settings() -> None:
    settings = load(
        {"role": "cluster", "cluster_name": "prod"},
        environ={"LBDOCTOR_AWS_ELBV2_REQUESTS_PER_SECOND": "2.5", "LBDOCTOR_AWS_REGION": "eu-west-1"},
    )
    aws = AwsSettings.from_settings(settings)
    assert (aws.cluster_name, aws.region, aws.elbv2_rate, aws.elbv2_burst, aws.target_health_interval) == (
        "prod",
        "eu-west-1",
        2.5,
        10,
        60.0,
    )
