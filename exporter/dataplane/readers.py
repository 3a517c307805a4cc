"""Read this node's kube-proxy rules: ``iptables-save`` (nft or legacy backend) or ``nft -j``. Adapter.

Commands run as asyncio subprocesses, so the event loop never blocks; output stays bytes until a
worker thread parses it. Nothing here raises into callers: a missing binary, a permission error,
a non-zero exit or a timeout becomes a ``ReadFailure`` with a kind and a one-line reason.

Which backend kube-proxy writes to is found the way the kube-proxy image's iptables wrapper finds
it (reference kube-proxy.md §8): the backend holding kubelet's ``KUBE-IPTABLES-HINT`` /
``KUBE-KUBELET-CANARY`` chains; without a hint, whichever backend holds kube-proxy's
``KUBE-SERVICES`` chain (nft first).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from exporter.dataplane.expected import IPV4, IPV6

IPTABLES, NFTABLES, IPVS = "iptables", "nftables", "ipvs"
MODES = (IPTABLES, NFTABLES, IPVS)
NFT_BACKEND, LEGACY_BACKEND = "nft", "legacy"
_HINT = re.compile(rb"^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) ", re.MULTILINE)
_KUBE_SERVICES = re.compile(rb"^:KUBE-SERVICES ", re.MULTILINE)
_IPVS_CHAINS = re.compile(rb"^:(KUBE-NODE-PORT|KUBE-LOAD-BALANCER|KUBE-IPVS-FILTER) ", re.MULTILINE)
_DENIED = ("permission denied", "operation not permitted", "you must be root")
_NFT_FAMILY = {IPV4: "ip", IPV6: "ip6"}
REDETECT_ROUNDS = 10  # look for the iptables backend again this often (kube-proxy upgrades may switch it)


@dataclass(frozen=True, slots=True)
class ReadFailure:
    kind: str  # missing_binary | permission_denied | failed | timeout
    command: str
    detail: str  # one line, fit for a message

    def __str__(self) -> str:
        return f"{self.command}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Output:
    command: str
    data: bytes


class Runner:
    """Runs one command, optionally inside another network namespace (a ``prefix`` such as
    ``ip netns exec NAME`` or ``nsenter --net=/proc/1/ns/net``)."""

    def __init__(self, prefix: Sequence[str] = (), timeout: float = 30.0, env: Mapping[str, str] | None = None) -> None:
        self.prefix = tuple(prefix)
        self.timeout = timeout
        self.env = dict(env) if env is not None else None  # None: lbdoctor's own environment

    async def __call__(self, argv: Sequence[str]) -> Output | ReadFailure:
        command = shlex.join(argv)
        try:
            process = await asyncio.create_subprocess_exec(
                *self.prefix,
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
            )
        except FileNotFoundError:
            return ReadFailure("missing_binary", command, f"{argv[0]} is not installed")
        except PermissionError as error:
            return ReadFailure("permission_denied", command, f"cannot run it: {error.strerror}")
        except OSError as error:
            return ReadFailure("failed", command, f"cannot run it: {error.strerror or error}")
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return ReadFailure("timeout", command, f"no answer within {self.timeout:g} s")
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        if process.returncode != 0:
            message = stderr.decode("utf-8", "replace").strip().splitlines()
            first = message[0] if message else "no error message"
            if self.prefix and process.returncode in (126, 127) and "exec" in first.lower():
                return ReadFailure("missing_binary", command, first)
            kind = "permission_denied" if any(word in first.lower() for word in _DENIED) else "failed"
            return ReadFailure(kind, command, f"exit code {process.returncode}: {first}")
        return Output(command, stdout)


@dataclass(frozen=True)
class RawRules:
    """One read of the dataplane: the bytes to parse, per IP family, and what went wrong."""

    mode: str | None  # iptables | nftables | ipvs; None: no kube-proxy rules found
    backend: str | None = None  # iptables: nft | legacy
    iptables: dict[str, bytes] = field(default_factory=dict)  # family → nat (+ filter) iptables-save text
    nft: dict[str, bytes] = field(default_factory=dict)  # family → nft -j JSON
    failure: ReadFailure | None = None  # the read that made the rules unreadable
    notes: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()  # what was run, for messages
    taken_at: float | None = None  # when the rules were read, if not just now (a dump from the sidecar)


class RulesReader(Protocol):
    """What the monitor reads rules with: the readers themselves, or the sidecar's dump (``dump.py``)."""

    async def read(self, families: Sequence[str] = ..., proxy_mode: str | None = None) -> RawRules: ...


def _save_commands(backend: str, family: str, table: str | None = None) -> list[list[str]]:
    """Candidates for one backend's iptables-save, most specific first (Debian names, then the multi-call
    binaries the kube-proxy image uses)."""
    tool = "ip6tables-save" if family == IPV6 else "iptables-save"
    prefix = "ip6tables" if family == IPV6 else "iptables"
    suffix = ["-t", table] if table else []
    return [[f"{prefix}-{backend}-save", *suffix], [f"xtables-{backend}-multi", tool, *suffix]]


class DataplaneReader:
    """Finds kube-proxy's mode and backend (or takes them from settings) and reads its rules."""

    def __init__(self, runner: Runner | None = None, *, mode: str = "auto") -> None:
        self._run = runner or Runner()
        self._mode = mode
        self._backend: str | None = None  # remembered once found, re-detected when a read finds nothing
        self._rounds = 0

    async def _first(self, candidates: list[list[str]]) -> Output | ReadFailure:
        """The first candidate command that exists (the others answer missing_binary)."""
        missing: ReadFailure | None = None
        for argv in candidates:
            result = await self._run(argv)
            if not (isinstance(result, ReadFailure) and result.kind == "missing_binary"):
                return result
            missing = missing or result
        assert missing is not None
        return missing  # say that the first, most common name is missing

    async def read(self, families: Sequence[str] = (IPV4,), proxy_mode: str | None = None) -> RawRules:
        """One read. ``proxy_mode`` is kube-proxy's own answer (GET /proxyMode), when it gave one."""
        mode = self._mode if self._mode != "auto" else proxy_mode if proxy_mode in MODES else None
        if mode == NFTABLES:
            return await self.read_nft(families)
        if mode == IPTABLES:
            return await self.read_iptables(families)
        if mode == IPVS:
            return RawRules(IPVS, notes=("kube-proxy reports IPVS mode",))
        # Auto without kube-proxy's answer: nftables if its table exists, else iptables.
        nft = await self.read_nft(families)
        if nft.mode == NFTABLES:
            return nft
        iptables = await self.read_iptables(families)
        if iptables.mode is None:
            return RawRules(None, failure=iptables.failure or nft.failure, commands=nft.commands + iptables.commands)
        return iptables

    async def read_nft(self, families: Sequence[str]) -> RawRules:
        texts: dict[str, bytes] = {}
        commands = []
        for family in families:
            argv = ["nft", "-j", "list", "table", _NFT_FAMILY[family], "kube-proxy"]
            commands.append(shlex.join(argv))
            result = await self._run(argv)
            if isinstance(result, Output):
                texts[family] = result.data
            elif result.kind == "failed" and "no such file or directory" in result.detail.lower():
                continue  # no such table: kube-proxy does not use nftables for this family
            else:
                return RawRules(None, failure=result, commands=tuple(commands))
        return RawRules(NFTABLES if texts else None, nft=texts, commands=tuple(commands))

    async def read_iptables(self, families: Sequence[str]) -> RawRules:
        """One ``iptables-save`` per backend and family, all tables at once: iptables-nft fetches the whole
        ruleset for any table it prints, so ``-t nat`` then ``-t filter`` would pay that twice (measured:
        2.8 s and 2.3 s for a 10,000-Service node), and legacy without ``-t`` creates no table.

        The backend is found once and remembered: kubelet's hint chains name it; without them, whichever
        backend holds kube-proxy's chains (nft first, as the wrapper defaults). It is looked for again every
        ``REDETECT_ROUNDS`` rounds, and whenever a read finds no kube-proxy rules."""
        self._rounds += 1
        if self._rounds % REDETECT_ROUNDS == 0:
            self._backend = None
        backends = [self._backend] if self._backend else [NFT_BACKEND, LEGACY_BACKEND]
        commands: list[str] = []
        holding: dict[str, dict[str, bytes]] = {}  # backend → family → dump, for backends with kube-proxy rules
        hinted: str | None = None
        failures: list[ReadFailure] = []
        for backend in backends:
            found: dict[str, bytes] = {}
            for family in families:
                dump = await self._first(_save_commands(backend, family, None))
                commands.append(dump.command)
                if isinstance(dump, ReadFailure):
                    failures.append(dump)
                    continue
                if _HINT.search(dump.data) and hinted is None:
                    hinted = backend
                if _IPVS_CHAINS.search(dump.data):  # IPVS mode keeps a KUBE-SERVICES chain too
                    return RawRules(IPVS, backend, commands=tuple(commands))
                if _KUBE_SERVICES.search(dump.data):
                    found[family] = dump.data
            if found:
                holding[backend] = found
        if not holding:
            self._backend = None
            return RawRules(None, failure=failures[0] if failures else None, commands=tuple(commands))
        chosen = hinted if hinted in holding else next(iter(holding))
        notes: list[str] = []
        if len(holding) > 1:
            why = "kubelet's hint chains name it" if hinted == chosen else "kubelet's hint chains are missing"
            other = next(b for b in holding if b != chosen)
            notes.append(
                f"kube-proxy chains exist in both iptables backends; compared the {chosen} one ({why}): the "
                f"{other} set is left over and may still catch traffic"
            )
        missing = [family for family in families if family not in holding[chosen]]
        if missing and failures:
            notes.append(f"{', '.join(missing)} rules not read: {failures[0]}")
        self._backend = chosen
        return RawRules(IPTABLES, chosen, iptables=holding[chosen], notes=tuple(notes), commands=tuple(commands))
