"""The rules dump between the privileged sidecar and the unprivileged agent: what crosses, what is refused."""

from __future__ import annotations

import json
import re
import subprocess
import sys
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


def _dump_rules(*flags: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "exporter", "dump-rules", *flags]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_the_sidecars_flags_are_checked_without_the_volume(tmp_path: Path) -> None:
    """``dump-rules --check-config`` (the chart's args as the kubelet passes them) accepts them before the
    emptyDir exists, and refuses a bad value with exit 2 and one line naming it."""
    missing = tmp_path / "not-mounted-yet"
    done = _dump_rules("--dir", str(missing), "--interval", "30", "--check-config")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"lbdoctor: dump-rules flags are valid (dir {missing}, interval 30 s, timeout 30 s)\n"
    assert not missing.exists()
    without = _dump_rules("--dir", str(missing), "--interval", "30")  # the real run needs the volume
    assert without.returncode == 2 and without.stderr == f"lbdoctor: {missing} is not a writable directory\n"


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--interval", "0"), "--interval must be 1..3600 seconds"),
        (("--timeout", "301"), "--timeout 1..300"),
        (("--command-prefix", 'nsenter "--net'), "--command-prefix is not a command line"),
        (("--dir", " "), "--dir must name the directory"),
    ],
    ids=["interval", "timeout", "prefix", "dir"],
)
def test_a_bad_sidecar_flag_is_one_line_and_exit_2(tmp_path: Path, flags: tuple[str, ...], named: str) -> None:
    done = _dump_rules("--dir", str(tmp_path), *flags, "--check-config")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("lbdoctor: ") and named in done.stderr


async def test_the_agent_waits_for_the_sidecars_first_dump_before_calling_it_missing(tmp_path: Path) -> None:
    """The agent and its sidecar start together: a first read before the first dump waits for it."""
    import asyncio
    import time

    reader = DumpReader(str(tmp_path), "auto", timeout=5, first_dump_wait=10)
    reading = asyncio.ensure_future(reader.read((IPV4,)))
    await asyncio.sleep(1.2)
    assert not reading.done()  # waiting, not reporting the dump missing
    (tmp_path / DUMP).write_bytes(encode(RawRules("iptables", iptables={IPV4: b"*nat"}), time.time(), 10))
    first = await asyncio.wait_for(reading, 5)
    assert first.failure is None and first.mode == "iptables"
    (tmp_path / DUMP).unlink()  # after the first dump, a missing one is reported at once
    again = await asyncio.wait_for(reader.read((IPV4,)), 2)
    assert again.failure is not None and again.failure.kind == "no_dump"
    late = DumpReader(str(tmp_path), "auto", timeout=5, first_dump_wait=0.6)
    gone = await asyncio.wait_for(late.read((IPV4,)), 5)  # the wait is bounded: then it is a finding
    assert gone.failure is not None and gone.failure.kind == "no_dump"
