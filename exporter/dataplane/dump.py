"""kube-proxy's rules through a shared directory: the smallest privileged piece reads, the agent compares.

Reading netfilter rules needs CAP_NET_ADMIN (and CAP_NET_RAW for iptables-legacy), which Kubernetes
gives to root processes only. Rather than run the whole node agent (HTTP server, prober, API client)
as root, a sidecar — ``lbdoctor dump-rules`` — runs the same readers every interval and writes what
they read to ``rules.dump`` in a directory both containers mount (an emptyDir), atomically (a temporary
file renamed over the old one). The agent, as an unprivileged user, reads that file instead of running
``iptables-save`` / ``nft`` itself (setting ``kube_proxy_rules_dir``).

The agent says what it wants in ``request.json`` (the mode setting, the IP families its Services need,
kube-proxy's own /proxyMode answer); the sidecar accepts only those enumerated values, so the
unprivileged side cannot make the privileged one run anything else. A dump older than twice the
sidecar's interval plus the command timeout is stale: the agent reports the rules unreadable (a
finding naming the sidecar) instead of comparing old data.

``rules.dump``: one JSON header line (schema ``lbdoctor.rules-dump/v1``, when it was written, the
interval, what the readers found and ran, and the length of each section), then the sections' bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from exporter.dataplane.expected import IPV4, IPV6
from exporter.dataplane.readers import MODES, DataplaneReader, RawRules, ReadFailure, Runner

log = structlog.get_logger("lbdoctor.dataplane")

SCHEMA = "lbdoctor.rules-dump/v1"
DUMP = "rules.dump"
REQUEST = "request.json"
_FAMILIES = (IPV4, IPV6)
_SETTING_MODES = ("auto", *MODES)
_HEADER_LIMIT = 1024 * 1024
_DUMP_LIMIT = 1024 * 1024 * 1024  # a 10,000-Service node dumps tens of MiB


def encode(raw: RawRules, written_at: float, interval: float) -> bytes:
    sections = [("iptables", family, data) for family, data in raw.iptables.items()]
    sections += [("nft", family, data) for family, data in raw.nft.items()]
    header = {
        "schema": SCHEMA,
        "written_at": written_at,
        "interval": interval,
        "mode": raw.mode,
        "backend": raw.backend,
        "failure": None
        if raw.failure is None
        else {"kind": raw.failure.kind, "command": raw.failure.command, "detail": raw.failure.detail},
        "notes": list(raw.notes),
        "commands": list(raw.commands),
        "sections": [{"kind": kind, "family": family, "length": len(data)} for kind, family, data in sections],
    }
    return json.dumps(header).encode() + b"\n" + b"".join(data for _, _, data in sections)


class DumpError(ValueError):
    pass


def _header(line: bytes) -> dict[str, Any]:
    if len(line) > _HEADER_LIMIT:
        raise DumpError("header too long")
    try:
        header = json.loads(line)
    except ValueError as error:
        raise DumpError(f"header is not JSON: {error}") from None
    if not isinstance(header, dict) or header.get("schema") != SCHEMA:
        raise DumpError(f"not a {SCHEMA} file")
    if not all(isinstance(header.get(key), (int, float)) for key in ("written_at", "interval")):
        raise DumpError("header without written_at and interval")
    return header


def decode(data: bytes) -> tuple[RawRules, float, float]:
    """(the rules, when they were written, the sidecar's interval); raises DumpError."""
    line, newline, rest = data.partition(b"\n")
    if not newline:
        raise DumpError("no header line")
    header = _header(line)
    try:
        iptables: dict[str, bytes] = {}
        nft: dict[str, bytes] = {}
        offset = 0
        for section in header["sections"]:
            length = int(section["length"])
            if length < 0 or offset + length > len(rest) or section["family"] not in _FAMILIES:
                raise DumpError("a section is cut short or unknown")
            target = iptables if section["kind"] == "iptables" else nft
            target[section["family"]] = rest[offset : offset + length]
            offset += length
        failure = header.get("failure")
        raw = RawRules(
            mode=header.get("mode") if header.get("mode") in MODES else None,
            backend=header.get("backend"),
            iptables=iptables,
            nft=nft,
            failure=None
            if not failure
            else ReadFailure(str(failure["kind"]), str(failure["command"]), str(failure["detail"])),
            notes=tuple(str(note) for note in header.get("notes") or ()),
            commands=tuple(str(command) for command in header.get("commands") or ()),
        )
        return raw, float(header["written_at"]), float(header["interval"])
    except (KeyError, TypeError, AttributeError) as error:
        raise DumpError(f"header field missing or mistyped: {error}") from None


def write_atomically(directory: Path, name: str, data: bytes, mode: int = 0o644) -> None:
    """Readers see the old file or the new one, never half of one."""
    temporary = directory / f".{name}.{os.getpid()}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fchmod(handle.fileno(), mode)
    os.replace(temporary, directory / name)


def read_request(directory: Path) -> tuple[str, tuple[str, ...], str | None]:
    """What the agent asked for: (mode setting, families, kube-proxy's mode); only known values are taken."""
    try:
        request = json.loads((directory / REQUEST).read_bytes()[:4096])
    except (OSError, ValueError):
        return "auto", (IPV4,), None
    if not isinstance(request, dict):
        return "auto", (IPV4,), None
    mode = request.get("mode") if request.get("mode") in _SETTING_MODES else "auto"
    asked = request.get("families")
    families = tuple(f for f in _FAMILIES if isinstance(asked, list) and f in asked) or (IPV4,)
    proxy_mode = request.get("proxy_mode") if request.get("proxy_mode") in MODES else None
    return str(mode), families, proxy_mode


async def dump_forever(directory: Path, interval: float, runner: Runner) -> None:
    """The sidecar: every ``interval`` seconds, read the rules as the agent asked and write the dump."""
    readers: dict[str, DataplaneReader] = {}
    logged: tuple[str | None, str | None] | None = None
    while True:
        mode, families, proxy_mode = await asyncio.to_thread(read_request, directory)
        reader = readers.setdefault(mode, DataplaneReader(runner, mode=mode))
        raw = await reader.read(families, proxy_mode)
        data = encode(raw, time.time(), interval)
        await asyncio.to_thread(write_atomically, directory, DUMP, data)
        state = (raw.mode, raw.failure.kind if raw.failure else None)
        if state != logged:
            logged = state
            log.info("kube-proxy rules dumped", mode=raw.mode, failure=str(raw.failure) if raw.failure else None)
        await asyncio.sleep(interval)


def stale(written_at: float, interval: float, timeout: float, now: float) -> float | None:
    """The dump's age when it is stale (the sidecar missed two rounds and a command's timeout), else None."""
    age = now - written_at
    return age if age > 2 * interval + timeout else None


def check(directory: Path, timeout: float) -> str | None:
    """The sidecar's liveness probe (``dump-rules --check``): why its dump is missing or stale, or None."""
    try:
        with open(directory / DUMP, "rb") as handle:
            header = _header(handle.readline(_HEADER_LIMIT + 1))
        written_at, interval = float(header["written_at"]), float(header["interval"])
    except FileNotFoundError:
        return "no dump yet"
    except (OSError, DumpError) as error:
        return f"unreadable dump: {error}"
    age = stale(written_at, interval, timeout, time.time())
    return None if age is None else f"the last dump is {age:.0f} s old (interval {interval:g} s)"


class DumpReader:
    """Stands in for ``DataplaneReader`` in the unprivileged agent: asks through ``request.json``, reads
    ``rules.dump``. A missing, unreadable or stale dump is a ReadFailure, never old rules."""

    def __init__(
        self,
        directory: str,
        mode: str,
        timeout: float,
        clock: Callable[[], float] = time.time,
        *,
        first_dump_wait: float = 0.0,
    ) -> None:
        self._directory = Path(directory)
        self._mode = mode
        self._timeout = timeout
        self._clock = clock
        self._asked: bytes | None = None
        # The sidecar starts with the agent: its first dump may come a little after the agent's first read.
        # Until it has come, or this long after the reader started, a missing dump is waited for, not reported.
        self._first_dump_by: float | None = time.monotonic() + first_dump_wait if first_dump_wait > 0 else None

    def _ask(self, families: Sequence[str], proxy_mode: str | None) -> None:
        request = json.dumps({"mode": self._mode, "families": list(families), "proxy_mode": proxy_mode}).encode()
        if request != self._asked:
            with contextlib.suppress(OSError):  # the dump's age tells if the sidecar is not listening
                write_atomically(self._directory, REQUEST, request)
                self._asked = request

    def _load(self) -> bytes:
        with open(self._directory / DUMP, "rb") as handle:
            return handle.read(_DUMP_LIMIT + 1)

    async def read(self, families: Sequence[str] = (IPV4,), proxy_mode: str | None = None) -> RawRules:
        where = str(self._directory / DUMP)
        await asyncio.to_thread(self._ask, families, proxy_mode)
        while True:
            try:
                data = await asyncio.to_thread(self._load)
                break
            except FileNotFoundError:
                if self._first_dump_by is None or time.monotonic() >= self._first_dump_by:
                    return _failed("no_dump", where, "no dump yet: is the kube-proxy-rules sidecar running?")
                await asyncio.sleep(0.5)
            except OSError as error:
                return _failed("failed", where, f"cannot read it: {error.strerror}")
        self._first_dump_by = None
        if len(data) > _DUMP_LIMIT:
            return _failed("truncated", where, f"larger than {_DUMP_LIMIT} bytes")
        try:
            raw, written_at, interval = await asyncio.to_thread(decode, data)
        except DumpError as error:
            return _failed("invalid_output", where, str(error))
        age = stale(written_at, interval, self._timeout, self._clock())
        if age is not None:
            return _failed(
                "stale_dump",
                where,
                f"the last dump is {age:.0f} s old, while the kube-proxy-rules sidecar writes one every "
                f"{interval:g} s: it has stopped (see its container's logs)",
            )
        return RawRules(
            raw.mode,
            raw.backend,
            raw.iptables,
            raw.nft,
            raw.failure,
            raw.notes,
            raw.commands,
            taken_at=written_at,
        )


def _failed(kind: str, where: str, detail: str) -> RawRules:
    return RawRules(None, failure=ReadFailure(kind, where, detail), commands=(where,))
