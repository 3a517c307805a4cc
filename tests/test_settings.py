"""Settings: flags over environment over file; unknown keys and bad values stop start-up in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# ---- Kubernetes service links (enableServiceLinks): variables of the namespace's Services -----------------


def link_env(service: str, ip: str = "10.100.0.7", port: int = 9850, port_name: str = "http-metrics") -> dict[str, str]:
    from tests.kubelet import service_links

    spec = {"clusterIP": ip, "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}
    return service_links([{"metadata": {"name": service}, "spec": spec}])


@pytest.mark.parametrize(
    "service", ["lbdoctor", "lbdoctor-cluster", "lbdoctor-node", "lbdoctor-config", "lbdoctor-listen", "lbdoctor-9"]
)
def test_service_link_variables_are_not_settings(service: str) -> None:
    env = {"NODE_NAME": "n", **link_env(service), **link_env(service + "-v6", ip="fd00:10:100::7", port=443)}
    assert any(name.startswith("LBDOCTOR_") for name in env)
    settings = load({}, environ=env)
    assert settings.listen == "0.0.0.0:9850" and settings.node_agent_port == 9850  # nothing taken from them


def test_a_real_setting_named_like_a_service_link_wins() -> None:
    # node_agent_port ends in _PORT, as a service link of a Service "lbdoctor-node-agent" would.
    assert load({}, environ={"NODE_NAME": "n", "LBDOCTOR_NODE_AGENT_PORT": "9851"}).node_agent_port == 9851
    # ... and when that Service exists, the variable holds its address: one line says where it comes from.
    env = {"NODE_NAME": "n", **link_env("lbdoctor-node-agent")}
    with pytest.raises(SettingsError) as raised:
        load({}, environ=env)
    message = str(raised.value)
    assert message.startswith("invalid setting node_agent_port from environment variable LBDOCTOR_NODE_AGENT_PORT")
    assert "'tcp://10.100.0.7:9850'" in message and "Service named 'lbdoctor-node-agent'" in message
    assert "enableServiceLinks: false" in message and "\n" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LBDOCTOR_NODE_AGENTS_PORT", "9850"),  # a typo of node_agent_port: ends in _PORT, but no link value
        ("LBDOCTOR_CLUSTER_PORT", "9850"),  # a link's name, not a link's value (tcp://IP:PORT)
        ("LBDOCTOR_CLUSTER_SERVICE_HOST", "lbdoctor-cluster.lbdoctor.svc"),  # links carry IPs
        ("LBDOCTOR_CLUSTER_SERVICE_PORT", "http"),
        ("LBDOCTOR_CLUSTER_PORT_9850_TCP", "tcp://10.100.0.7:80"),  # the port in the name and the value differ
        ("LBDOCTOR_CLUSTER_PORT_9850_TCP_PROTO", "udp"),
        ("LBDOCTOR_CLUSTER_PORT_9850_TCP_ADDR", "10.100.0.300"),
        ("LBDOCTOR_PROBE_CONCURENCY", "5"),
    ],
)
def test_mistyped_settings_still_stop_start_up(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"environment variable {name}: unknown setting") as raised:
        load({}, environ={"NODE_NAME": "n", name: value})
    assert "\n" not in str(raised.value)


_service_names = st.from_regex(r"lbdoctor(-[a-z0-9]{1,8}){0,3}", fullmatch=True)
_port_names = st.one_of(st.none(), st.from_regex(r"[a-z]([a-z0-9-]{0,12}[a-z0-9])?", fullmatch=True))
_ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)


@given(
    services=st.lists(
        st.tuples(
            _service_names,
            _ips,
            st.lists(st.tuples(st.integers(1, 65535), _port_names, st.sampled_from(["TCP", "UDP", "SCTP"])), min_size=1),
        ),
        max_size=4,
    )
)
@settings(max_examples=50, deadline=None)
def test_any_namespace_of_services_is_accepted(services: list[tuple[str, str, list[tuple[int, str | None, str]]]]) -> None:
    from exporter.settings import Settings
    from tests.kubelet import service_links

    objects = [
        {
            "metadata": {"name": name},
            "spec": {
                "clusterIP": ip,
                "ports": [{"port": p, **({"name": n} if n else {}), "protocol": proto} for p, n, proto in ports],
            },
        }
        for name, ip, ports in services
    ]
    env = {"NODE_NAME": "n", **service_links(objects)}
    collides = [k for k in env if k.startswith("LBDOCTOR_") and k[9:].lower() in Settings.model_fields]
    if collides:  # a Service named after a setting: that setting wins, and says where its value came from
        with pytest.raises(SettingsError, match="service-link variable"):
            load({}, environ=env)
    else:
        load({}, environ=env)
