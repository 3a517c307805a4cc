"""The container image, as far as it can be tested without a container engine: the wheel it installs
builds and its entrypoint runs from a fresh environment; the Dockerfile's Debian packages are exactly
those owning the commands the node role runs; the Dockerfile follows the conventions and passes checkov."""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exporter import __version__
from tests.ship.contract import ROOT

DOCKERFILE = ROOT / "Dockerfile"

# Commands the kube-proxy work (issue 4) runs to read a node's rules, as planned; merged with what the
# code really runs (found below), so the list in the image follows the code as it lands.
PLANNED_COMMANDS = {"iptables-save", "iptables-legacy-save", "iptables-nft-save", "nft"}
CHECKOV_FLAGS = ("--framework", "dockerfile", "--output", "json", "--quiet", "--compact", "--skip-download")
_SUBPROCESS_CALLS = {"run", "Popen", "check_output", "check_call", "call", "create_subprocess_exec"}
_MODULES = {"subprocess", "asyncio"}


def subprocess_call(node: ast.AST) -> bool:
    """``subprocess.run(...)``, ``asyncio.create_subprocess_exec(...)`` or such a function imported by
    name; not any method that happens to be called ``run`` or ``call`` (``self._api.call(...)``)."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    if isinstance(node.func, ast.Attribute):
        owner = node.func.value
        return node.func.attr in _SUBPROCESS_CALLS and isinstance(owner, ast.Name) and owner.id in _MODULES
    return isinstance(node.func, ast.Name) and node.func.id in _SUBPROCESS_CALLS - {"run", "call"}


def commands_in(source: str) -> set[str]:
    """Program names passed literally to subprocess / asyncio subprocess calls in ``source``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if subprocess_call(node):
            first = node.args[0]  # type: ignore[attr-defined]
            if isinstance(first, (ast.List, ast.Tuple)) and first.elts:
                first = first.elts[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value.split()[0])
    return found


def commands_in_code() -> set[str]:
    """What the roles run, anywhere in exporter/ except the demo (which runs on a person's machine, not
    from the image: its kube-proxy namespace needs ``ip``)."""
    demo = ROOT / "exporter" / "demo"
    return {
        command
        for path in (ROOT / "exporter").rglob("*.py")
        if demo not in path.parents
        for command in commands_in(path.read_text())
    }


def apt_packages() -> set[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    installs = re.findall(r"apt-get install ([^&\n]+)", text)
    return {word for line in installs for word in line.split() if not word.startswith("-")}


def owning_package(command: str) -> str:
    """The Debian package that ships `command` on this (Debian, as the image) machine."""
    path = shutil.which(command)
    if path is None:
        pytest.skip(f"{command} is not installed (scripts/test installs iptables and nftables as root)")
    # Alternatives links are owned by no package, and on a merged-/usr system dpkg knows /bin/ip and
    # /sbin/ip while PATH finds /usr/sbin/ip.
    found = (path, os.path.realpath(path))
    candidates = [*found, *(each.removeprefix("/usr") for each in found if each.startswith("/usr/"))]
    for candidate in candidates:
        done = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.split(":", 1)[0]
    raise AssertionError(f"no Debian package owns {path}")


def test_debian_packages_are_exactly_what_the_node_role_runs() -> None:
    if shutil.which("dpkg") is None:
        pytest.skip("dpkg is not available (not Debian)")
    commands = commands_in_code() | PLANNED_COMMANDS
    assert apt_packages() == {owning_package(command) for command in commands}


def test_the_command_scan_finds_subprocess_calls() -> None:
    """The scan above is the safety net for new commands: prove it sees the usual spellings and is not
    fooled by methods of the same name."""
    sample = (
        "import asyncio, subprocess\n"
        "from subprocess import check_output\n"
        "async def f(self):\n"
        "    await asyncio.create_subprocess_exec('iptables-save', '-t', 'nat')\n"
        "    subprocess.run(['nft', '-j', 'list', 'ruleset'])\n"
        "    check_output(('conntrack', '-L'))\n"
        "    await self._api.call('describe_target_health', TargetGroupArn='x')\n"
        "    runner.run('not-a-command')\n"
    )
    assert commands_in(sample) == {"iptables-save", "nft", "conntrack"}
    assert "describe_target_health" not in commands_in_code()


def test_dockerfile_conventions() -> None:
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert len(bases) >= 2, "multi-stage: build, then a slim runtime"
    assert len(set(bases)) == 1, "both stages on the same base"
    found = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-(\w+)", bases[0])
    assert found, f"a slim Python base pinned by full version: {bases[0]}"
    assert (int(found.group(1)), int(found.group(2))) == sys.version_info[:2], "the Python the tests run on"
    runtime = text.rsplit("\nFROM ", 1)[1]
    user = re.findall(r"^USER (\S+)", runtime, flags=re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("0", "root"), "non-root default user"
    assert re.search(r'^ENTRYPOINT \["lbdoctor"\]$', runtime, flags=re.MULTILINE)
    assert "--no-install-recommends" in runtime and "rm -rf /var/lib/apt/lists/*" in runtime


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches a path (or one of its parents) decides."""
    ignored = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    for source in (word for line in copied for word in line.split()):
        assert not dockerignored(source.rstrip("/"), patterns), source
        assert (ROOT / source).exists(), source
    assert not dockerignored("exporter/cli.py", patterns)
    for kept_out in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/test_demo.py",
        "helm/lbdoctor/Chart.yaml",
        "test-output/x.png",
    ):
        assert dockerignored(kept_out, patterns), kept_out
    assert dockerignored("exporter/__pycache__/cli.cpython-311.pyc", patterns)


def test_checkov_passes_the_dockerfile() -> None:
    checkov = ROOT / ".venv-tools" / "bin" / "checkov"
    if not checkov.exists():
        pytest.skip("scripts/test installs checkov into .venv-tools")
    done = subprocess.run(
        [str(checkov), "--file", str(DOCKERFILE), *CHECKOV_FLAGS],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(done.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["failed"] == 0, report["results"]["failed_checks"]
    assert report["summary"]["passed"] > 20


@pytest.mark.slow
def test_the_wheel_builds_and_its_entrypoint_runs_in_a_fresh_environment(tmp_path: Path) -> None:
    """What the Dockerfile's build stage does: build the wheel, install it alone, run `lbdoctor version`."""
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("lbdoctor-*.whl")
    assert wheel.name.startswith(f"lbdoctor-{__version__}-")
    listing = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True, text=True)
    assert "exporter/cli.py" in listing.stdout and "exporter/py.typed" in listing.stdout
    assert "tests/" not in listing.stdout and "dashboards/" not in listing.stdout

    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True, timeout=120)
    installed = subprocess.run(
        [fresh / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    ran = subprocess.run([fresh / "bin" / "lbdoctor", "version"], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == f"lbdoctor {__version__}"
    checked = subprocess.run(
        [fresh / "bin" / "lbdoctor", "run", "--role", "node", "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], "NODE_NAME": "ip-10-0-1-23.ec2.internal", "LBDOCTOR_LISTEN": "0.0.0.0:9850"},
    )
    assert checked.returncode == 0, checked.stderr
    assert "settings are valid (role node" in checked.stdout
