"""A real etcd and kube-apiserver (built by scripts/kube-binaries) for the front-end CRD tests.

Started the way envtest starts them: no other control-plane component, a static admin token in
system:masters, a self-signed serving certificate, the ServiceAccount admission plugin off (no
controller-manager creates default ServiceAccounts). Loopback only, ports chosen at start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "lbdoctor-test-admin"


def binaries() -> Path:
    """The directory holding etcd and kube-apiserver; skips the test when they cannot be had."""
    if shutil.which("go") is None and not os.environ.get("LBDOCTOR_KUBE_CACHE"):
        cached = sorted((Path.home() / ".cache" / "lbdoctor" / "kube").glob("*/kube-apiserver"))
        if not cached:
            pytest.skip("no Go toolchain to build kube-apiserver and etcd (scripts/kube-binaries)")
    built = subprocess.run([str(ROOT / "scripts" / "kube-binaries")], capture_output=True, text=True, timeout=3600)
    if built.returncode != 0:
        pytest.skip(f"scripts/kube-binaries failed: {built.stderr.strip().splitlines()[-1:]}")
    return Path(built.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(url: str, deadline: float) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        time.sleep(0.25)
    raise RuntimeError(f"{url} not ready: {last}")


@contextlib.contextmanager
def api_server(workdir: Path) -> Iterator[Path]:
    """Run etcd and kube-apiserver; yields a kubeconfig for the admin token."""
    found = binaries()
    etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
    (workdir / "certs").mkdir()
    key, public = workdir / "sa.key", workdir / "sa.pub"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(public)], check=True, capture_output=True)
    tokens = workdir / "tokens.csv"
    tokens.write_text(f'{TOKEN},admin,admin,"system:masters"\n')
    logs = [open(workdir / "etcd.log", "w"), open(workdir / "apiserver.log", "w")]  # noqa: SIM115
    etcd = subprocess.Popen(
        [
            str(found / "etcd"),
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            "--log-level=error",
        ],
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    apiserver = subprocess.Popen(
        [
            str(found / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--secure-port={api_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={workdir / 'certs'}",
            "--service-cluster-ip-range=10.96.0.0/12",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={public}",
            f"--service-account-signing-key-file={key}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            "--disable-admission-plugins=ServiceAccount",
        ],
        stdout=logs[1],
        stderr=subprocess.STDOUT,
    )
    try:
        _ready(f"https://127.0.0.1:{api_port}/readyz", time.monotonic() + 90)
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: real\n"
            f"clusters: [{{name: real, cluster: {{server: 'https://127.0.0.1:{api_port}', "
            "insecure-skip-tls-verify: true}}]\n"
            f"users: [{{name: admin, user: {{token: {TOKEN}}}}}]\n"
            "contexts: [{name: real, context: {cluster: real, user: admin}}]\n"
        )
        yield kubeconfig
    finally:
        for process in (apiserver, etcd):
            process.terminate()
        for process in (apiserver, etcd):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()
