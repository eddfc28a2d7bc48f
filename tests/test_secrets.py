"""Secrets are never shown: not in a repr, a log line, an error, /readyz or a traceback;
and never sent in clear to a Simpro beyond this machine."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from simpro_counter.errors import ConfigError, SimproAuthError
from simpro_counter.settings import Settings, load_settings, simpro_config
from simpro_counter.simpro import SimproClient
from simpro_counter.simulator import Simulator
from simpro_counter.wiring import redis_target
from tests.service_fixtures import ADMIN_TOKEN, free_port, running_app, service_settings

API_KEY = "api-key-5e1f0c"
CLIENT_SECRET = "client-secret-77ab2d"
PASS_HEAD, PASS_TAIL = "c0ffee51", "9d7ba3e2"
REDIS_PASSWORD = PASS_HEAD + PASS_TAIL
# A port nothing listens on, for URLs that must be refused before any connection: were
# one ever let through, it would reach no Redis of the machine's.
NO_REDIS_PORT = free_port()
ADMIN = "admin-token-4d9b1a-5c8e7f2a9b3d6e1f70"
WEBHOOK = "webhook-secret-a8e3"
SENTINEL = "sentinel-pass-19f2"
SECRETS = (API_KEY, CLIENT_SECRET, REDIS_PASSWORD, ADMIN, WEBHOOK, SENTINEL)


def _shown(*texts: str) -> list[str]:
    """The secrets that appear in any of `texts`."""
    return [secret for secret in SECRETS if any(secret in text for text in texts)]


def test_the_settings_never_show_a_secret() -> None:
    # Plain strings, as the environment gives them.
    values: dict[str, Any] = {
        "simpro_base_url": "https://acme.simprosuite.com",
        "simpro_api_key": API_KEY,
        "simpro_client_id": "id",
        "simpro_client_secret": CLIENT_SECRET,
        "redis_url": f"redis://user:{REDIS_PASSWORD}@redis.invalid:6390/0",
        "redis_sentinel_password": SENTINEL,
        "admin_token": ADMIN,
        "webhook_secret": WEBHOOK,
    }
    settings = Settings(**values)
    assert _shown(repr(settings), str(settings), f"{settings!r:}") == []
    assert settings.simpro_api_key is not None
    assert settings.simpro_api_key.get_secret_value() == API_KEY  # kept, only hidden
    assert _shown(repr(redis_target(settings))) == []
    assert "redis://***@redis.invalid:6390/0" in repr(redis_target(settings))


@pytest.mark.parametrize("oauth", [False, True])
def test_the_simpro_config_never_shows_its_credentials(
    monkeypatch: pytest.MonkeyPatch, oauth: bool
) -> None:
    monkeypatch.setenv("SIMPRO_BASE_URL", "https://acme.simprosuite.com")
    if oauth:
        monkeypatch.setenv("SIMPRO_CLIENT_ID", "id")
        monkeypatch.setenv("SIMPRO_CLIENT_SECRET", CLIENT_SECRET)
    else:
        monkeypatch.setenv("SIMPRO_API_KEY", API_KEY)
    config = simpro_config(load_settings())
    assert _shown(repr(config), str(config)) == []
    secret = config.client_secret if oauth else config.api_key
    assert secret is not None
    assert secret.get_secret_value() == (CLIENT_SECRET if oauth else API_KEY)


@pytest.mark.parametrize("oauth", [False, True])
async def test_a_refused_credential_is_in_no_log_line_or_traceback(
    simulator: Simulator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    oauth: bool,
) -> None:
    """Every logger at DEBUG (httpx and httpcore included), and the traceback rendered
    with its frames' locals, as error trackers and rich tracebacks show them."""
    monkeypatch.chdir(tmp_path)  # no .env of the working directory
    monkeypatch.setenv("SIMPRO_BASE_URL", "https://simpro.test")  # the simulator, in-process
    if oauth:
        monkeypatch.setenv("SIMPRO_CLIENT_ID", "demo-client")
        monkeypatch.setenv("SIMPRO_CLIENT_SECRET", CLIENT_SECRET)
    else:
        monkeypatch.setenv("SIMPRO_API_KEY", API_KEY)
    config = simpro_config(load_settings())  # as the service builds it
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SimproAuthError) as raised:
        async with SimproClient(config, transport=simulator.transport()) as client:
            await client.page("customers", 1)
    rendered = "".join(traceback.TracebackException.from_exception(
        raised.value, capture_locals=True
    ).format())  # fmt: skip
    assert "SimproClient" in rendered  # the frames, and their locals, are there
    assert _shown(caplog.text, rendered, str(raised.value)) == []
    assert "check SIMPRO_" in str(raised.value)


async def test_an_unreachable_redis_with_a_password_is_reported_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{NO_REDIS_PORT}/0"
    caplog.set_level(logging.DEBUG)
    async with running_app(service_settings(url)) as (_, client):
        public = await client.get("/readyz")
        ready = await client.get("/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        status = await client.get("/api/simpro/customers/refresh")
    assert public.status_code == ready.status_code == 503
    assert "127.0.0.1" not in public.text  # where Redis is: only with the token
    assert "127.0.0.1" in ready.text  # where it is, without the password
    assert "Redis unreachable" in caplog.text  # the failure is logged, the password not
    assert _shown(public.text, ready.text, status.text, caplog.text) == []


@pytest.mark.parametrize(
    "url",
    [
        # An unencoded `/` or `#` makes urllib read the password's tail as the host and
        # its head as a port, which its error quotes.
        f"redis://:{PASS_HEAD}/{PASS_TAIL}@127.0.0.1:{NO_REDIS_PORT}/0",
        f"redis://:{PASS_HEAD}#{PASS_TAIL}@127.0.0.1:{NO_REDIS_PORT}/0",
        f"redis://:{REDIS_PASSWORD}@127.0.0.1:port/0",
        f"http://:{REDIS_PASSWORD}@127.0.0.1:{NO_REDIS_PORT}",
    ],
)
def test_a_bad_redis_url_is_one_line_without_any_of_it(
    url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pieces = (PASS_HEAD, PASS_TAIL)
    with pytest.raises(ValidationError) as direct:
        Settings(redis_url=url)
    assert not any(piece in str(direct.value) for piece in pieces)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ConfigError) as loaded:
        load_settings()
    assert str(loaded.value).startswith("REDIS_URL is invalid: ")
    assert not any(piece in str(loaded.value) for piece in pieces)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMPRO_")}
    result = subprocess.run(
        [sys.executable, "-m", "simpro_counter", "refresh"],
        env={**env, "REDIS_URL": url, "SIMPRO_BASE_URL": "https://acme.simprosuite.com",
             "SIMPRO_API_KEY": "k"},
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error: REDIS_URL is invalid")
    assert not any(piece in result.stderr for piece in pieces)


@pytest.mark.parametrize(
    "url",
    ["http://acme.simprosuite.com", "http://10.0.0.5:8080", "http://localhost.example.com"],
)
def test_simpro_over_plain_http_beyond_loopback_is_refused(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMPRO_BASE_URL", url)
    monkeypatch.setenv("SIMPRO_API_KEY", API_KEY)
    with pytest.raises(ConfigError) as refused:
        simpro_config(load_settings())
    message = str(refused.value)
    assert message == (
        "SIMPRO_BASE_URL must use https:// (http:// only to 127.0.0.1, localhost or [::1]): "
        "the credentials would be sent in clear."
    )
    assert "\n" not in message


@pytest.mark.parametrize(
    "url",
    [
        "https://acme.simprosuite.com",
        "http://127.0.0.1:8765",
        "http://127.0.0.2",
        "http://localhost:8765/",
        "http://LOCALHOST",
        "http://[::1]:8765",
    ],
)
def test_https_or_loopback_http_is_accepted(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPRO_BASE_URL", url)
    monkeypatch.setenv("SIMPRO_API_KEY", API_KEY)
    assert simpro_config(load_settings()).base_url == url
