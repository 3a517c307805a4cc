"""moto in server mode (a real HTTP server on loopback) for the AWS tests, reset before each test.

boto3 reaches it through ``AWS_ENDPOINT_URL``, the same setting a user would use. Instance metadata
and shared config files are switched off so nothing ever leaves loopback.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from tests.aws.world import REGION, World, build_world


@pytest.fixture(name="moto_url", scope="session")
def _moto_url() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request drowns a failure's output
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def moto_post(url: str, path: str, body: bytes = b"") -> dict[str, object]:
    # text/plain: moto reads the raw body, which Flask leaves empty for a form content type.
    request = urllib.request.Request(url + path, data=body, method="POST", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _aws_environment(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[None]:
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    moto_post(moto_url, "/moto-api/reset")
    yield
    moto_post(moto_url, "/moto-api/reset-auth", b"inf")


@pytest.fixture(name="world")
def _world(moto_url: str) -> World:
    return build_world(moto_url)
