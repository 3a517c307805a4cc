"""The hardened HTTP face against real clients on loopback: the exporter-toolkit web config (TLS, client
certificates, basic auth with bcrypt, headers, rate limit), connection caps, the header timeout, shared
renders and several listen addresses."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from exporter.metrics.collectors import ProbeRenderer
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.model.results import ResultSet
from exporter.settings import SettingsError, load
from exporter.state import Board, Published
from exporter.web import server
from exporter.web.listener import Limits
from exporter.web.webconfig import Watched, WebConfigError, parse_duration
from exporter.web.webconfig import load as load_web_config
from tests.conftest import next_ip
from tests.pki import make_pki
from tests.test_metrics_slices import busy_board

# The exporter-toolkit's own test users (web/testdata/web_config_users_noTLS.good.yml): hashes made by Go's
# bcrypt with the $2y$ prefix htpasswd writes, so a file made for node_exporter works unchanged.
TOOLKIT_USERS = """
basic_auth_users:
  carol: $2y$10$qRTBuFoULoYNA7AQ/F3ck.trZBPyjV64.oA4ZsSBCIWvXuvQlQTuu
  dave: $2y$10$2UXri9cIDdgeKjBo4Rlpx.U3ZLDV8X1IxKmsfOvhcM5oXQt/mLmXq
"""


class Face:
    def __init__(self, runner: web.AppRunner, ip: str, port: int, metrics: SelfMetrics) -> None:
        self.runner, self.ip, self.port, self.metrics = runner, ip, port, metrics

    def errors(self, kind: str) -> float:
        value = self.metrics.registry.get_sample_value("lbdoctor_errors_total", {"component": "web", "kind": kind})
        return value or 0.0


@contextlib.asynccontextmanager
async def serving(
    board: Board | None = None,
    *,
    config: Path | None = None,
    limits: Limits | None = None,
    header_timeout: float = 10.0,
    addresses: list[tuple[str, int]] | None = None,
    renderer: ProbeRenderer | None = None,
) -> AsyncIterator[Face]:
    metrics = SelfMetrics("node")
    board = board or ready_board()
    watched = Watched(str(config), lambda error: None, clock=time.monotonic) if config else None
    options = server.WebOptions(limits=limits or Limits(), header_timeout=header_timeout, config=watched)
    ip = next_ip()
    app = server.build_app(board, metrics, options)
    if renderer is not None:
        app[server.RENDERER] = renderer
    runner, port = await server.start(app, addresses or [(ip, 0)])
    try:
        yield Face(runner, (addresses or [(ip, 0)])[0][0], port, metrics)
    finally:
        await runner.cleanup()


def ready_board() -> Board:
    board = Board("node")
    board.publish(Published(ResultSet(1, 1.7e9, ()), (), node="n"))
    board.ready = True
    return board


def write(folder: Path, text: str) -> Path:
    path = folder / "web-config.yml"
    path.write_text(text)
    return path


async def get(
    url: str, *, context: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connector = aiohttp.TCPConnector(ssl=context if context is not None else False, force_close=True)
    headers = {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()} if auth else {}
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as response,
    ):
        return response.status, dict(response.headers), await response.read()


# ---- the web config ---------------------------------------------------------------------------------


async def test_basic_auth_takes_the_toolkits_bcrypt_hashes(tmp_path: Path) -> None:
    config = write(tmp_path, TOOLKIT_USERS)
    async with serving(config=config) as face:
        base = f"http://{face.ip}:{face.port}"
        assert (await get(f"{base}/metrics", auth=("dave", "dave123")))[0] == 200
        assert (await get(f"{base}/api/v1/results", auth=("carol", "carol123")))[0] == 200
        for auth in (None, ("dave", "bad"), ("nonexistent", "dave123")):
            status, headers, _ = await get(f"{base}/metrics", auth=auth)
            assert status == 401 and headers["WWW-Authenticate"] == "Basic"
        # The kubelet's probes carry no credentials and must still work.
        assert (await get(f"{base}/healthz"))[0] == 200
        assert (await get(f"{base}/readyz"))[0] == 200
        assert face.errors("unauthorized") == 3


async def test_response_headers_and_rate_limit(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"
        "rate_limit:\n  interval: 1m\n  burst: 2\n",
    )
    async with serving(config=config) as face:
        base = f"http://{face.ip}:{face.port}"
        first = await get(f"{base}/")
        assert (
            first[0] == 200
            and first[1]["X-Frame-Options"] == "deny"
            and first[1]["X-Content-Type-Options"] == "nosniff"
        )
        assert (await get(f"{base}/metrics"))[0] == 200
        limited = await get(f"{base}/metrics")
        assert limited[0] == 429 and limited[1]["X-Frame-Options"] == "deny"
        assert (await get(f"{base}/healthz"))[0] == 200  # not counted against the kubelet
        missing = await get(f"{base}/nothing-here")
        assert missing[0] == 429


async def test_tls_from_the_web_config_and_certificates_picked_up_when_they_change(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    ip = next_ip()
    cert, key = pki.issue("server", f"IP:{ip}")
    (tmp_path / "tls.crt").write_bytes(cert.read_bytes())
    (tmp_path / "tls.key").write_bytes(key.read_bytes())
    config = write(tmp_path, "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  min_version: TLS12\n")
    client = ssl.create_default_context(cafile=str(pki.ca))
    async with serving(config=config, addresses=[(ip, 0)]) as face:
        status, _, body = await get(f"https://{ip}:{face.port}/metrics", context=client)
        assert status == 200 and b"lbdoctor_build_info" in body
        with pytest.raises(aiohttp.ClientError):
            await get(f"http://{ip}:{face.port}/metrics")  # plain HTTP gets no answer from a TLS face
        # A renewed certificate (cert-manager rewrote the Secret) is served without a restart.
        renewed, renewed_key = pki.issue("renewed", f"IP:{ip}")
        (tmp_path / "tls.crt").write_bytes(renewed.read_bytes())
        (tmp_path / "tls.key").write_bytes(renewed_key.read_bytes())
        await asyncio.sleep(1.1)
        _reader, writer = await asyncio.open_connection(ip, face.port, ssl=client, server_hostname=ip)
        served = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        assert served == ssl.PEM_cert_to_DER_cert(renewed.read_text())


async def test_client_certificates_and_allowed_sans(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    ip = next_ip()
    cert, key = pki.issue("server", f"IP:{ip}")
    prometheus = pki.issue("prometheus", "DNS:prometheus.monitoring.svc", client=True)
    stranger = pki.issue("stranger", "DNS:someone.else", client=True)
    config = write(
        tmp_path,
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"
        "  client_allowed_sans: [prometheus.monitoring.svc]\n",
    )

    def client(pair: tuple[Path, Path] | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(pki.ca))
        if pair is not None:
            context.load_cert_chain(*pair)
        return context

    async with serving(config=config, addresses=[(ip, 0)]) as face:
        url = f"https://{ip}:{face.port}/metrics"
        assert (await get(url, context=client(prometheus)))[0] == 200
        for pair in (None, stranger):
            with pytest.raises(aiohttp.ClientError):
                await get(url, context=client(pair))
        # aiohttp retries a GET once when the server hangs up, so each refusal may count twice.
        assert face.errors("client_certificate") >= 1 and face.errors("tls_handshake") >= 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_server_config:\n  cert_file: a\n  key_fil: b\n", "unknown key tls_server_config.key_fil"),
        ("basic_auth_user:\n  a: b\n", "unknown key basic_auth_user"),
        ("basic_auth_users:\n  alice: secret\n", "basic_auth_users.alice: not a bcrypt hash"),
        ("tls_server_config:\n  key_file: k\n", "missing one of cert or cert_file"),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAnyClientCert\n",
            "not supported",
        ),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca\n", "without a Client Auth Policy"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS14\n", "unknown TLS version: TLS14"),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            "unknown cipher",
        ),
        ("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n", "No such file"),
        ("http_server_config:\n  headers:\n    Server: lbdoctor\n", 'HTTP header "Server" can not be configured'),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "invalid value for X-Frame-Options"),
        ("rate_limit:\n  interval: soon\n", "rate_limit.interval: not a duration"),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS13\n  max_version: TLS12\n",
            "min_version TLS13 is above max_version",
        ),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_a_bad_web_config_is_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(WebConfigError) as error:
        load_web_config(str(path))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(path) in str(error.value)
    with pytest.raises(SettingsError) as settings_error:
        load({"web_config_file": str(path)}, environ={"NODE_NAME": "n"})
    assert "web_config_file" in str(settings_error.value) and message in str(settings_error.value)


def test_an_empty_or_tls_less_config_serves_plain_http(tmp_path: Path) -> None:
    assert load_web_config(str(write(tmp_path, ""))).tls is None
    assert load_web_config(str(write(tmp_path, "http_server_config:\n  http2: false\n"))).tls is None


def test_go_durations() -> None:
    assert parse_duration("1s", "x") == 1.0
    assert parse_duration("1m30s", "x") == 90.0
    assert parse_duration("250ms", "x") == 0.25
    assert parse_duration(0, "x") == 0.0


# ---- connections --------------------------------------------------------------------------------------


def idle_connection(ip: str, port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect((ip, port))
    return sock


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def test_connection_caps_per_client_and_in_all(tmp_path: Path) -> None:
    """One client holds at most its share of connections; the others still get answers."""
    attacker, other = next_ip(), next_ip()
    held: list[socket.socket] = []
    async with serving(limits=Limits(max_connections=12, max_per_client=4)) as face:
        try:
            for _ in range(6):
                held.append(await asyncio.to_thread(idle_connection, face.ip, face.port, attacker))
            await asyncio.sleep(0.2)
            refused = [sock for sock in held if await asyncio.to_thread(closed_within, sock, 0.3)]
            assert len(refused) == 2  # the fifth and sixth were reset at once
            assert face.errors("connection_limit") == 2
            status, _, _ = await get(f"http://{face.ip}:{face.port}/healthz")
            assert status == 200
        finally:
            for sock in held:
                sock.close()
    assert other != attacker


async def test_idle_and_slow_connections_are_closed_after_the_header_timeout() -> None:
    """A connection that sends nothing, or dribbles its request head a byte at a time, is closed."""
    async with serving(header_timeout=1.0) as face:
        silent = await asyncio.to_thread(idle_connection, face.ip, face.port, next_ip())
        dribble = await asyncio.to_thread(idle_connection, face.ip, face.port, next_ip())
        started = time.monotonic()
        for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n":
            try:
                dribble.send(bytes([byte]))
            except OSError:
                break
            await asyncio.sleep(0.1)
            if time.monotonic() - started > 3:
                break
        assert await asyncio.to_thread(closed_within, dribble, 2.0)
        assert await asyncio.to_thread(closed_within, silent, 0.5)
        assert time.monotonic() - started < 4.0
        silent.close()
        dribble.close()
        assert face.port


async def test_huge_request_heads_are_refused_with_400() -> None:
    async with serving() as face:
        reader, writer = await asyncio.open_connection(face.ip, face.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        assert line.startswith(b"HTTP/1.") and b" 400 " in line
    assert face.errors("bad_request") == 1  # counted, not logged with a traceback


async def test_concurrent_scrapes_share_one_rendering() -> None:
    board = busy_board(200)
    renders = 0

    class Counting(ProbeRenderer):
        def steps(self, statuses, out):  # type: ignore[no-untyped-def]
            nonlocal renders
            renders += 1
            yield from super().steps(statuses, out)

    async with serving(board, renderer=Counting()) as face:
        answers = await asyncio.gather(*(get(f"http://{face.ip}:{face.port}/metrics") for _ in range(8)))
    assert {status for status, _, _ in answers} == {200}
    assert len({body for _, _, body in answers}) == 1
    assert renders < 8


async def test_several_listen_addresses() -> None:
    first, second = next_ip(), next_ip()
    async with serving(addresses=[(first, 0), (second, 0)]) as face:
        for ip in (first, second):
            assert (await get(f"http://{ip}:{face.port}/healthz"))[0] == 200


def test_the_connection_budget_leaves_a_descriptor_per_probe_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from exporter.web import listener

    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1024, 1024))
    assert listener.connection_budget(256, 200) == 256
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (512, 512))
    assert listener.connection_budget(256, 200) == 512 - 200 - listener.RESERVED_DESCRIPTORS
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (256, 256))
    assert listener.connection_budget(256, 200) == 8  # never none at all


ACCEPT_FLOOD = """
import asyncio, json, resource, socket, sys
from exporter.web.listener import Limits, Listener, bind

class Errors:
    def __init__(self): self.counts = {}
    def error(self, component, kind): self.counts[kind] = self.counts.get(kind, 0) + 1

async def main():
    ip = sys.argv[1]
    errors = Errors()
    [sock] = bind([(ip, 0)])
    port = sock.getsockname()[1]
    listener = Listener([sock], asyncio.Protocol, Limits(max_connections=10_000, max_per_client=10_000), errors)
    clients = [socket.socket() for _ in range(60)]
    opened = len(__import__("os").listdir("/proc/self/fd"))
    # 20 descriptors left for accepting 60 connections: accept must fail, and fail closed.
    resource.setrlimit(resource.RLIMIT_NOFILE, (opened + 20, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    for client in clients:
        client.setblocking(False)
        try:
            client.connect((ip, port))
        except BlockingIOError:
            pass
        await asyncio.sleep(0.01)
    await asyncio.sleep(1.0)
    full = listener.open
    for client in clients:
        client.close()
    await asyncio.sleep(1.0)
    late = socket.create_connection((ip, port))
    await asyncio.sleep(0.5)
    print(json.dumps({"errors": errors.counts, "open_when_full": full, "open_after": listener.open}))
    late.close()
    listener.close()

asyncio.run(main())
"""


def test_accept_fails_closed_when_descriptors_run_out(tmp_path: Path) -> None:
    """Out of descriptors, accepting pauses and counts instead of spinning and logging a traceback per try;
    once descriptors are free again, connections are accepted again."""
    import json
    import subprocess
    import sys

    script = tmp_path / "flood.py"
    script.write_text(ACCEPT_FLOOD)
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(script), next_ip()], capture_output=True, text=True, timeout=60, cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["errors"].get("accept_descriptors", 0) >= 1
    assert found["errors"]["accept_descriptors"] < 20  # paused between tries, not once per wake-up
    assert 0 < found["open_when_full"] < 60
    assert found["open_after"] >= 1  # accepting again
    assert "Traceback" not in done.stderr and len(done.stderr) < 2000


def test_a_changed_web_config_is_picked_up_and_a_broken_change_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = write(tmp_path, "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    now = [0.0]
    errors: list[WebConfigError] = []
    watched = Watched(str(path), errors.append, clock=lambda: now[0])
    assert watched.current().headers == {"X-Frame-Options": "deny"}
    path.write_text("http_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n    X-Bad: 1\n")
    now[0] += 2
    assert watched.current().headers == {"X-Frame-Options": "deny"}  # the last good one
    now[0] += 2
    watched.current()
    assert len(errors) == 1 and 'HTTP header "X-Bad" can not be configured' in str(errors[0])  # said once
    path.write_text("http_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n")
    now[0] += 2
    assert watched.current().headers == {"X-Frame-Options": "sameorigin"}
