"""Reading the rules fails in ordinary ways; each becomes a typed failure with a reason, never an exception."""

from __future__ import annotations

import stat
from pathlib import Path

from exporter.dataplane.monitor import analyse_raw
from exporter.dataplane.readers import DataplaneReader, ReadFailure, Runner
from exporter.dataplane.report import RulesState
from tests.dataplane.conftest import Netns
from tests.dataplane.generator import NODE, Ep, Svc, snapshot

SERVICES = [Svc("web", "172.20.0.10", (Ep("10.244.1.5"),))]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]


async def test_missing_binaries_make_the_rules_unreadable(tmp_path: Path) -> None:
    nothing = Runner(env={"PATH": str(tmp_path)})
    raw = await DataplaneReader(nothing, mode="iptables").read()
    assert raw.mode is None and raw.failure is not None
    assert (raw.failure.kind, raw.failure.detail) == ("missing_binary", "iptables-nft-save is not installed")
    analysis = analyse_raw(raw, snapshot(SERVICES), NODE)
    assert analysis.state is RulesState.UNREADABLE and analysis.failure == "missing_binary"
    assert analysis.detail == "iptables-nft-save: iptables-nft-save is not installed"
    nft = await DataplaneReader(nothing, mode="nftables").read()
    assert nft.failure is not None and nft.failure.detail == "nft is not installed"
    auto = await DataplaneReader(nothing).read()
    assert auto.failure is not None and auto.failure.kind == "missing_binary"


async def test_a_failing_command_carries_its_exit_code_and_message(tmp_path: Path) -> None:
    stub = tmp_path / "iptables-nft-save"
    stub.write_text("#!/bin/sh\necho 'iptables-nft-save: table nat is incompatible, use nft tool' >&2\nexit 3\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    raw = await DataplaneReader(Runner(env={"PATH": str(tmp_path)}), mode="iptables").read()
    assert raw.failure == ReadFailure(
        "failed", "iptables-nft-save", "exit code 3: iptables-nft-save: table nat is incompatible, use nft tool"
    )


async def test_a_hanging_command_times_out() -> None:
    result = await Runner(timeout=0.2)(["sleep", "30"])
    assert isinstance(result, ReadFailure) and result.kind == "timeout" and result.detail == "no answer within 0.2 s"


async def test_the_real_tools_fail_for_real(netns: Netns) -> None:
    result = await Runner(netns.prefix)(["iptables-legacy-save", "-t", "nosuchtable"])
    assert isinstance(result, ReadFailure) and result.kind == "failed" and result.detail.startswith("exit code ")


async def test_no_permission_without_net_admin(netns: Netns) -> None:
    unprivileged = Runner([*netns.prefix, *NOBODY])
    for mode in ("iptables", "nftables"):
        raw = await DataplaneReader(unprivileged, mode=mode).read()
        assert raw.failure is not None and raw.failure.kind == "permission_denied", raw.failure
        analysis = analyse_raw(raw, snapshot(SERVICES), NODE)
        assert analysis.state is RulesState.UNREADABLE and "you must be root" in analysis.detail
