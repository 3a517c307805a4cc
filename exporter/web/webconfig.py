"""``web-config.yml`` in the Prometheus exporter-toolkit format: TLS, basic auth, response headers, a rate limit.

The same keys and meanings as the toolkit (``docs/web-configuration.md`` of prometheus/exporter-toolkit),
so a file written for node_exporter or Prometheus works here unchanged: relative file names are read
from the file's folder, ``min_version`` defaults to TLS12, ``basic_auth_users`` holds bcrypt hashes
(``htpasswd -nBC 10 "" | tr -d ':\\n'``), and an unknown key is an error, one line naming it.

Where lbdoctor departs (README "Hardened HTTP face" lists them):

- ``client_auth_type`` ``RequestClientCert`` and ``RequireAnyClientCert`` (accept a client certificate
  without verifying it) are refused: Python's ``ssl`` cannot accept an unverified certificate, and the
  toolkit itself calls them insecure. ``NoClientCert``, ``VerifyClientCertIfGiven`` and
  ``RequireAndVerifyClientCert`` are supported.
- ``curve_preferences`` takes one curve (``ssl`` sets a single ECDH curve).
- ``http_server_config.http2`` is accepted and ignored: lbdoctor serves HTTP/1.1.
- ``/healthz`` and ``/readyz`` answer without basic auth, so the kubelet's probes work; they say only
  "ok" or why the caches are not synced yet.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class WebConfigError(Exception):
    """The web config cannot be used; the message is one line naming the file and the key."""


# The toolkit accepts exactly the cipher suites Go's tls.CipherSuites() lists; OpenSSL spells them so.
# TLS 1.3 suites are accepted and, as in Go, do not restrict anything (TLS 1.3 is not configurable).
CIPHER_SUITES: dict[str, str | None] = {
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNSUPPORTED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
# The toolkit lets these response headers be set, some only to the listed values.
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_BCRYPT = re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}")
_KEYS: dict[str, set[str]] = {
    "": {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"},
    "tls_server_config": {
        "cert",
        "key",
        "client_ca",
        "cert_file",
        "key_file",
        "client_auth_type",
        "client_ca_file",
        "client_allowed_sans",
        "min_version",
        "max_version",
        "cipher_suites",
        "prefer_server_cipher_suites",
        "curve_preferences",
    },
    "http_server_config": {"http2", "headers"},
    "rate_limit": {"interval", "burst"},
}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class TlsSettings:
    cert_file: str | None = None
    key_file: str | None = None
    cert: str | None = None  # inline PEM
    key: str | None = None  # inline PEM
    client_ca_file: str | None = None
    client_ca: str | None = None
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebConfig:
    """What a web-config.yml asks for; ``tls`` None serves plain HTTP, as the toolkit does."""

    tls: TlsSettings | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    users: Mapping[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    rate_interval: float = 0.0  # seconds between requests in the long run; 0: no limit
    rate_burst: int = 0
    files: tuple[str, ...] = ()  # every file this config reads (itself first), to notice changes

    def tls_context(self) -> ssl.SSLContext | None:
        return None if self.tls is None else build_tls_context(self.tls)


def parse_duration(value: object, where: str) -> float:
    """A Go duration ("1s", "250ms", "1m30s"), or a number of nanoseconds, in seconds."""
    if isinstance(value, bool):
        raise WebConfigError(f"{where}: expected a duration such as 1s, got {value!r}")
    if isinstance(value, int | float):
        return float(value) / 1e9
    if not isinstance(value, str):
        raise WebConfigError(f"{where}: expected a duration such as 1s, got {value!r}")
    text = value.strip()
    if text == "0":
        return 0.0
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-")
    total, position = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise WebConfigError(f"{where}: not a duration (for example 1s, 500ms, 1m30s): {value!r}")
    return sign * total


def load(path: str) -> WebConfig:
    """Read and check a web config, its certificates included; raises WebConfigError with one line."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise WebConfigError(f"web config {path}: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise WebConfigError(f"web config {path}: not valid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise WebConfigError(f"web config {path}: expected a mapping of the exporter-toolkit keys")
    check = _Checker(path)
    check.keys("", data)
    folder = os.path.dirname(os.path.abspath(path))
    tls = check.tls(data.get("tls_server_config"), folder)
    http = check.mapping("http_server_config", data.get("http_server_config"))
    check.keys("http_server_config", http)
    if "http2" in http and not isinstance(http["http2"], bool):
        raise WebConfigError(f"web config {path}: http_server_config.http2 must be true or false")
    headers = check.headers(http.get("headers"))
    users = check.users(data.get("basic_auth_users"))
    limit = check.mapping("rate_limit", data.get("rate_limit"))
    check.keys("rate_limit", limit)
    interval = parse_duration(limit.get("interval", 0), f"web config {path}: rate_limit.interval")
    burst = limit.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        raise WebConfigError(f"web config {path}: rate_limit.burst must be a whole number, got {burst!r}")
    config = WebConfig(
        tls=tls,
        headers=headers,
        users=users,
        rate_interval=max(interval, 0.0),
        rate_burst=burst,
        files=(path, *(f for f in _tls_files(tls))),
    )
    try:
        config.tls_context()  # the certificates must load now, not at the first connection
    except WebConfigError as error:
        raise WebConfigError(f"web config {path}: {error}") from None
    return config


def _tls_files(tls: TlsSettings | None) -> list[str]:
    if tls is None:
        return []
    return [f for f in (tls.cert_file, tls.key_file, tls.client_ca_file) if f]


class _Checker:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, message: str) -> WebConfigError:
        return WebConfigError(f"web config {self.path}: {message}")

    def keys(self, section: str, data: Mapping[str, Any]) -> None:
        allowed = _KEYS[section]
        for key in data:
            if key not in allowed:
                name = f"{section}.{key}" if section else str(key)
                raise self.fail(f"unknown key {name} (known: {', '.join(sorted(allowed))})")

    def mapping(self, name: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"{name} must be a mapping")
        return value

    def text(self, name: str, value: Any) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.fail(f"{name} must be a string")
        return value

    def strings(self, name: str, value: Any) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(f"{name} must be a list of strings")
        return tuple(value)

    def tls(self, value: Any, folder: str) -> TlsSettings | None:
        data = self.mapping("tls_server_config", value)
        self.keys("tls_server_config", data)
        section = "tls_server_config"

        def path_of(key: str) -> str | None:
            name = self.text(f"{section}.{key}", data.get(key))
            return None if name is None else os.path.join(folder, name)

        cert_file, key_file, ca_file = path_of("cert_file"), path_of("key_file"), path_of("client_ca_file")
        cert = self.text(f"{section}.cert", data.get("cert"))
        key = self.text(f"{section}.key", data.get("key"))
        client_ca = self.text(f"{section}.client_ca", data.get("client_ca"))
        auth = self.text(f"{section}.client_auth_type", data.get("client_auth_type")) or ""
        # The toolkit's rule: TLS is on when any of these is set, and then needs a certificate and key.
        if not any((cert_file, key_file, ca_file, cert, key, client_ca, auth)):
            return None
        if cert_file is None and cert is None:
            raise self.fail(f"{section}: missing one of cert or cert_file")
        if key_file is None and key is None:
            raise self.fail(f"{section}: missing one of key or key_file")
        if auth in UNSUPPORTED_CLIENT_AUTH:
            raise self.fail(
                f"{section}.client_auth_type {auth} (a client certificate taken without verifying it) is not "
                f"supported; use RequireAndVerifyClientCert with client_ca_file"
            )
        if auth not in CLIENT_AUTH:
            raise self.fail(f"{section}.client_auth_type: invalid ClientAuth {auth!r}")
        if (ca_file or client_ca) and CLIENT_AUTH[auth] == ssl.CERT_NONE:
            raise self.fail(f"{section}: client CA's have been configured without a Client Auth Policy")
        versions = {}
        for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
            version = self.text(f"{section}.{name}", data.get(name)) or default
            if version not in TLS_VERSIONS:
                raise self.fail(f"{section}.{name}: unknown TLS version: {version}")
            versions[name] = version
        if TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]:
            raise self.fail(f"{section}: min_version {versions['min_version']} is above max_version")
        ciphers = self.strings(f"{section}.cipher_suites", data.get("cipher_suites")) or ()
        for cipher in ciphers:
            if cipher not in CIPHER_SUITES:
                raise self.fail(f"{section}.cipher_suites: unknown cipher: {cipher}")
        curves = self.strings(f"{section}.curve_preferences", data.get("curve_preferences")) or ()
        for curve in curves:
            if curve not in CURVES:
                raise self.fail(f"{section}.curve_preferences: unknown curve: {curve}")
        if len(curves) > 1:
            raise self.fail(f"{section}.curve_preferences: lbdoctor sets one curve, got {len(curves)}")
        prefer = data.get("prefer_server_cipher_suites", True)
        if not isinstance(prefer, bool):
            raise self.fail(f"{section}.prefer_server_cipher_suites must be true or false")
        return TlsSettings(
            cert_file=cert_file,
            key_file=key_file,
            cert=cert,
            key=key,
            client_ca_file=ca_file,
            client_ca=client_ca,
            client_auth_type=auth or "NoClientCert",
            client_allowed_sans=self.strings(f"{section}.client_allowed_sans", data.get("client_allowed_sans")),
            min_version=versions["min_version"],
            max_version=versions["max_version"],
            cipher_suites=ciphers,
            prefer_server_cipher_suites=prefer,
            curve_preferences=curves,
        )

    def headers(self, value: Any) -> dict[str, str]:
        data = self.mapping("http_server_config.headers", value)
        for name, text in data.items():
            if name not in HEADERS:
                raise self.fail(f'HTTP header "{name}" can not be configured')
            if not isinstance(text, str) or "\n" in text or "\r" in text:
                raise self.fail(f"http_server_config.headers.{name} must be a one-line string")
            allowed = HEADERS[name]
            if allowed and text not in allowed:
                raise self.fail(f"invalid value for {name}. Expected one of: {list(allowed)}, but got: {text!r}")
        return {name: text for name, text in data.items() if text}

    def users(self, value: Any) -> dict[str, bytes]:
        data = self.mapping("basic_auth_users", value)
        users = {}
        for user, hashed in data.items():
            if not isinstance(user, str) or not isinstance(hashed, str) or _BCRYPT.fullmatch(hashed) is None:
                raise self.fail(f"basic_auth_users.{user}: not a bcrypt hash (make one with htpasswd -nBC 10)")
            users[user] = hashed.encode()
        return users


def build_tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """The server context a TlsSettings describes; raises WebConfigError when a file or PEM does not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    older = [name for suite in tls.cipher_suites if (name := CIPHER_SUITES[suite]) is not None]
    try:
        if older:
            context.set_ciphers(":".join(older))
        for curve in tls.curve_preferences:
            context.set_ecdh_curve(CURVES[curve])
        _load_pair(context, tls)
        context.verify_mode = CLIENT_AUTH[tls.client_auth_type]
        if tls.client_ca_file:
            context.load_verify_locations(cafile=tls.client_ca_file)
        elif tls.client_ca:
            context.load_verify_locations(cadata=tls.client_ca)
        elif context.verify_mode != ssl.CERT_NONE:
            context.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # Go verifies against the system roots then
    except (OSError, ssl.SSLError, ValueError) as error:
        reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or error
        raise WebConfigError(f"tls_server_config: {reason}") from None
    context.set_alpn_protocols(["http/1.1"])
    return context


def _load_pair(context: ssl.SSLContext, tls: TlsSettings) -> None:
    if tls.cert_file and tls.key_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
        return
    # ssl loads certificates from files only: inline PEM goes through a private temporary folder.
    with tempfile.TemporaryDirectory(prefix="lbdoctor-tls-") as folder:
        cert_file = tls.cert_file or _private_file(folder, "cert.pem", tls.cert or "")
        key_file = tls.key_file or _private_file(folder, "key.pem", tls.key or "")
        context.load_cert_chain(cert_file, key_file)


def _private_file(folder: str, name: str, text: str) -> str:
    path = os.path.join(folder, name)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    return path


def san_allowed(peer: Mapping[str, Any] | None, allowed: tuple[str, ...]) -> bool:
    """The toolkit's client_allowed_sans: a verified client certificate with a DNS, IP, e-mail or URI SAN
    exactly in the list."""
    if not peer:
        return False
    for kind, value in peer.get("subjectAltName", ()):
        if kind in ("DNS", "IP Address", "email", "URI") and str(value).strip() in allowed:
            return True
    return False


class Watched:
    """The web config, re-read when the file or a certificate it names changes (checked at most once a
    second, on use), as the toolkit re-reads it; a change that does not load keeps the last good config
    and is reported once."""

    def __init__(
        self,
        path: str,
        on_error: Callable[[WebConfigError], None],
        *,
        clock: Callable[[], float],
    ) -> None:
        self.path = path
        self._on_error = on_error
        self._clock = clock
        self.config = load(path)
        self._context = self.config.tls_context()
        self._stamp = _stamp(self.config.files)
        self._checked = clock()
        self._failed_stamp: tuple[tuple[float, int], ...] | None = None

    def current(self) -> WebConfig:
        self._refresh()
        return self.config

    def tls_context(self) -> ssl.SSLContext | None:
        self._refresh()
        return self._context

    def allowed_sans(self) -> tuple[str, ...] | None:
        tls = self.config.tls
        return tls.client_allowed_sans if tls is not None else None

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._checked < 1.0:
            return
        self._checked = now
        stamp = _stamp(self.config.files)
        if stamp == self._stamp or stamp == self._failed_stamp:
            return
        try:
            config = load(self.path)
            context = config.tls_context()
        except WebConfigError as error:
            self._failed_stamp = stamp
            self._on_error(error)
            return
        self.config, self._context = config, context
        self._stamp = _stamp(config.files)
        self._failed_stamp = None


def _stamp(files: tuple[str, ...]) -> tuple[tuple[float, int], ...]:
    found = []
    for name in files:
        try:
            info = os.stat(name)
        except OSError:
            found.append((-1.0, -1))
        else:
            found.append((info.st_mtime, info.st_size))
    return tuple(found)
