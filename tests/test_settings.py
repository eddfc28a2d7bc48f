"""Settings: a missing or malformed variable gives one precise line saying what to set."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from simpro_counter.errors import ConfigError
from simpro_counter.settings import load_settings, simpro_config

SIMPRO_VARS = (
    "SIMPRO_BASE_URL",
    "SIMPRO_API_KEY",
    "SIMPRO_CLIENT_ID",
    "SIMPRO_CLIENT_SECRET",
    "SIMPRO_RATE_LIMIT",
    "SIMPRO_COMPANY_ID",
    "SIMPRO_PAGE_SIZE",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in SIMPRO_VARS:
        monkeypatch.delenv(name, raising=False)


def test_missing_base_url_says_what_to_set_and_mentions_the_demo() -> None:
    with pytest.raises(ConfigError) as raised:
        simpro_config(load_settings())
    message = str(raised.value)
    assert "SIMPRO_BASE_URL is not set" in message
    assert "simpro-counter demo" in message
    assert "\n" not in message


def test_missing_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPRO_BASE_URL", "https://acme.simprosuite.com")
    with pytest.raises(ConfigError, match="set SIMPRO_API_KEY, or SIMPRO_CLIENT_ID and"):
        simpro_config(load_settings())


def test_half_of_oauth2_names_the_other_half(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPRO_BASE_URL", "https://acme.simprosuite.com")
    monkeypatch.setenv("SIMPRO_CLIENT_ID", "abc")
    with pytest.raises(ConfigError, match="SIMPRO_CLIENT_SECRET is not set"):
        simpro_config(load_settings())


@pytest.mark.parametrize(
    ("name", "value"),
    [("SIMPRO_RATE_LIMIT", "fast"), ("SIMPRO_PAGE_SIZE", "1000"), ("SIMPRO_COMPANY_ID", "-1")],
)
def test_a_malformed_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"^{name} is invalid: ") as raised:
        load_settings()
    assert value not in str(raised.value)  # values may be secrets; they are never echoed


def test_a_url_without_scheme_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPRO_BASE_URL", "acme.simprosuite.com")
    monkeypatch.setenv("SIMPRO_API_KEY", "k")
    with pytest.raises(ConfigError, match="must start with https://"):
        simpro_config(load_settings())


def test_env_file_and_api_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "SIMPRO_BASE_URL=https://acme.simprosuite.com/\nSIMPRO_API_KEY=key\n"
        "SIMPRO_COMPANY_ID=3\nSIMPRO_RATE_LIMIT=5\n"
    )
    config = simpro_config(load_settings())
    assert config.api_root == "https://acme.simprosuite.com/api/v1.0/"
    assert (config.company_id, config.rate_limit, config.api_key) == (3, 5.0, SecretStr("key"))
    assert config.credential_setting == "SIMPRO_API_KEY"


def test_oauth2_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMPRO_BASE_URL", "https://acme.simprosuite.com")
    monkeypatch.setenv("SIMPRO_CLIENT_ID", "id")
    monkeypatch.setenv("SIMPRO_CLIENT_SECRET", "secret")
    config = simpro_config(load_settings())
    assert (config.client_id, config.client_secret, config.api_key) == (
        "id",
        SecretStr("secret"),
        None,
    )
    assert config.credential_setting == "SIMPRO_CLIENT_ID and SIMPRO_CLIENT_SECRET"
