"""Network namespaces the tests create for themselves, so real iptables and nft never touch the host's tables."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence

import pytest

_names = itertools.count(1)


class Netns:
    """One network namespace made by a test: rules go in with the real tools, and lbdoctor reads them
    through ``prefix`` (``ip netns exec NAME``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def run(self, argv: Sequence[str], text_input: str | None = None) -> str:
        done = subprocess.run(
            [*self.prefix, *argv], input=text_input, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"{' '.join(argv)} failed: {done.stderr.strip()}"
        return done.stdout

    def restore(self, rules: str, backend: str = "legacy", *, ipv6: bool = False, flush: bool = False) -> None:
        """Load rules with one iptables-restore: added to what is there, or (``flush``) replacing the tables
        named, as kube-proxy's full syncs do."""
        tool = f"{'ip6tables' if ipv6 else 'iptables'}-{backend}-restore"
        self.run([tool] if flush else [tool, "--noflush"], rules)

    def save(self, table: str, backend: str = "legacy", *, ipv6: bool = False) -> str:
        return self.run([f"{'ip6tables' if ipv6 else 'iptables'}-{backend}-save", "-t", table])

    def nft(self, script: str) -> None:
        self.run(["nft", "-f", "-"], script)


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace and load iptables/nft rules (CI runs as root)")
    for tool in ("ip", "iptables-legacy-restore", "iptables-nft-restore", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/test installs iptables, nftables and iproute2 as root)")


@pytest.fixture(name="netns")
def _netns() -> Iterator[Netns]:
    need_root()
    name = f"lbd-{os.getpid()}-{next(_names)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    try:
        yield Netns(name)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
