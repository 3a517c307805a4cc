"""The rules dump between the privileged sidecar and the unprivileged agent: what crosses, what is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from exporter.dataplane.dump import DUMP, REQUEST, DumpError, DumpReader, decode, encode, read_request
from exporter.dataplane.expected import IPV4, IPV6
from exporter.dataplane.readers import RawRules, ReadFailure


def test_a_dump_carries_the_rules_and_what_the_readers_found() -> None:
    raw = RawRules(
        "iptables",
        "nft",
        iptables={IPV4: b"*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n", IPV6: b"*nat\nCOMMIT\n"},
        notes=("a note",),
        commands=("iptables-nft-save",),
    )
    back, written_at, interval = decode(encode(raw, 1000.5, 30))
    assert (written_at, interval) == (1000.5, 30)
    assert back.iptables == raw.iptables and back.mode == "iptables" and back.backend == "nft"
    assert back.notes == raw.notes and back.commands == raw.commands and back.failure is None
    failed = RawRules(None, failure=ReadFailure("permission_denied", "nft -j list table ip kube-proxy", "no"))
    assert decode(encode(failed, 1, 1))[0].failure == failed.failure


@pytest.mark.parametrize(
    "data",
    [b"", b"not json\n", b'{"schema": "other"}\n', encode(RawRules("iptables", iptables={IPV4: b"x" * 10}), 1, 1)[:-3]],
    ids=["empty", "garbage", "schema", "cut-short"],
)
def test_a_bad_dump_is_refused(data: bytes) -> None:
    with pytest.raises(DumpError):
        decode(data)


def test_the_sidecar_takes_only_known_values_from_the_agent(tmp_path: Path) -> None:
    assert read_request(tmp_path) == ("auto", (IPV4,), None)  # nothing asked yet
    (tmp_path / REQUEST).write_text(
        json.dumps({"mode": "nftables", "families": ["IPv6", "IPv4"], "proxy_mode": "iptables"})
    )
    assert read_request(tmp_path) == ("nftables", (IPV4, IPV6), "iptables")
    hostile = {"mode": "iptables; reboot", "families": ["--help", "IPv4"], "proxy_mode": "$(id)"}
    (tmp_path / REQUEST).write_text(json.dumps(hostile))
    assert read_request(tmp_path) == ("auto", (IPV4,), None)


async def test_the_agent_asks_and_reads_and_refuses_a_stale_dump(tmp_path: Path) -> None:
    now = [2000.0]
    reader = DumpReader(str(tmp_path), "auto", timeout=5, clock=lambda: now[0])
    missing = await reader.read((IPV4, IPV6), "nftables")
    assert missing.mode is None and missing.failure is not None and missing.failure.kind == "no_dump"
    assert json.loads((tmp_path / REQUEST).read_text()) == {
        "mode": "auto",
        "families": ["IPv4", "IPv6"],
        "proxy_mode": "nftables",
    }
    (tmp_path / DUMP).write_bytes(encode(RawRules("nftables", nft={IPV4: b"{}"}), 1990.0, 10))
    fresh = await reader.read((IPV4,))
    assert fresh.mode == "nftables" and fresh.nft == {IPV4: b"{}"} and fresh.taken_at == 1990.0
    now[0] = 1990.0 + 2 * 10 + 5 + 1  # two intervals and the timeout later: the sidecar has stopped
    stale = await reader.read((IPV4,))
    assert stale.mode is None and stale.failure is not None and stale.failure.kind == "stale_dump"
    assert "26 s old" in stale.failure.detail
    (tmp_path / DUMP).write_bytes(b"garbage")
    assert (await reader.read((IPV4,))).failure.kind == "invalid_output"  # type: ignore[union-attr]


def test_the_sidecars_liveness_probe_says_when_its_dump_is_stale(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    def probe() -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "exporter", "dump-rules", "--check", "--dir", str(tmp_path), "--timeout", "5"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    assert probe().returncode == 1 and "no dump yet" in probe().stderr
    (tmp_path / DUMP).write_bytes(encode(RawRules("iptables", iptables={IPV4: b"x" * 100}), time.time(), 10))
    assert probe().returncode == 0
    (tmp_path / DUMP).write_bytes(encode(RawRules("iptables"), time.time() - 60, 10))
    done = probe()
    assert done.returncode == 1 and re.search(r"the last dump is 6\d s old \(interval 10 s\)", done.stderr)
