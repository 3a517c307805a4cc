"""Throwaway certificates made by openssl: a CA, a server certificate for loopback, client certificates."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_tool


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=cwd)


@dataclass(frozen=True)
class Pki:
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    def issue(self, name: str, san: str, *, client: bool = False) -> tuple[Path, Path]:
        """A certificate signed by the CA with subjectAltName ``san`` (e.g. ``IP:127.0.0.1``); (cert, key)."""
        key, csr, cert = (self.folder / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
        ext = self.folder / f"{name}.ext"
        usage = "clientAuth" if client else "serverAuth"
        ext.write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n")
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}",
             "-keyout", key.name, "-out", csr.name, cwd=self.folder)  # fmt: skip
        _run("x509", "-req", "-in", csr.name, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
             "-extfile", ext.name, "-out", cert.name, cwd=self.folder)  # fmt: skip
        return cert, key


def make_pki(folder: Path) -> Pki:
    require_tool("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
         "-subj", "/CN=lbdoctor test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)  # fmt: skip
    return Pki(folder)
