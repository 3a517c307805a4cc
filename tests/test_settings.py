"""Settings: flags over environment over file; unknown keys and bad values stop start-up in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.settings import SettingsError, load


def test_precedence_flag_env_file(tmp_path: Path) -> None:
    config = tmp_path / "lbdoctor.yaml"
    config.write_text("probe-concurrency: 10\nlisten: 127.0.0.1:1\nnode_name: from-file\n")
    env = {"LBDOCTOR_PROBE_CONCURRENCY": "20", "LBDOCTOR_LOG_LEVEL": "debug"}
    settings = load({"probe_concurrency": 30}, config_file=str(config), environ=env)
    assert settings.probe_concurrency == 30
    assert settings.log_level == "debug"
    assert settings.listen == "127.0.0.1:1"
    assert settings.node_name == "from-file"


def test_node_name_from_downward_api_variable() -> None:
    assert load({}, environ={"NODE_NAME": "ip-10-0-1-5"}).node_name == "ip-10-0-1-5"


@pytest.mark.parametrize(
    ("flags", "environ", "message"),
    [
        ({}, {}, "the node role needs node_name"),
        (
            {"probe_concurrency": 0},
            {"NODE_NAME": "n"},
            "invalid setting probe_concurrency from flag --probe-concurrency",
        ),
        ({}, {"NODE_NAME": "n", "LBDOCTOR_LISTEN": "9850"}, "LBDOCTOR_LISTEN: expected HOST:PORT"),
        ({}, {"NODE_NAME": "n", "LBDOCTOR_PROBE_CONCURENCY": "5"}, "did you mean 'probe_concurrency'"),
        ({}, {"NODE_NAME": "n", "LBDOCTOR_LOG_FORMAT": "xml"}, "environment variable LBDOCTOR_LOG_FORMAT"),
    ],
)
def test_bad_settings_name_the_key(flags: dict[str, object], environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as raised:
        load(flags, environ=environ)
    assert "\n" not in str(raised.value)


def test_unknown_key_in_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("node_name: n\nprobe_interval: 3\n")
    with pytest.raises(SettingsError, match=r"config file .*c.yaml: unknown setting 'probe_interval'"):
        load({}, config_file=str(config), environ={})


def test_broken_yaml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("node_name: [unclosed\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load({}, config_file=str(broken), environ={})
    with pytest.raises(SettingsError, match="No such file"):
        load({}, config_file=str(tmp_path / "absent.yaml"), environ={})


def lbdoctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_cli_check_config_and_exit_codes(tmp_path: Path) -> None:
    good = lbdoctor("run", "--role", "node", "--node-name", "n1", "--check-config", env={"PATH": "/usr/bin"})
    assert good.returncode == 0 and "settings are valid" in good.stdout
    bad = lbdoctor("run", "--probe-concurrency", "-1", "--node-name", "n1", "--check-config", env={"PATH": "/usr/bin"})
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "probe_concurrency" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_version_and_help() -> None:
    assert lbdoctor("version").stdout.startswith("lbdoctor ")
    help_text = lbdoctor("--help").stdout
    assert all(command in help_text for command in ("run", "demo", "version"))


def test_cli_unreachable_config_is_one_line(tmp_path: Path) -> None:
    result = lbdoctor(
        "run",
        "--node-name",
        "n1",
        "--kubeconfig",
        str(tmp_path / "nope"),
        env={"PATH": "/usr/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "kubeconfig" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
