"""Every environment variable of the service, in one pydantic-settings object.

Settings come from the environment and from a `.env` file in the working directory.
Nothing else in the package reads `os.environ`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from simpro_counter.errors import ConfigError
from simpro_counter.keys import DEFAULT_PREFIX, LOCK_TTL_SECONDS, WEBHOOK_BACKLOG_LIMIT
from simpro_counter.simpro.config import SimproConfig

DEMO_HINT = "`simpro-counter demo` runs without Simpro"
ADMIN_TOKEN_MIN_LENGTH = 32
MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


class Settings(BaseSettings):
    """The service's configuration; each field is one environment variable (upper-cased)."""

    # Inputs are left out of validation errors: a bad value might be a secret (REDIS_URL
    # with a password, a key pasted into the wrong variable).
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    simpro_base_url: str | None = Field(
        default=None, description="Your build's URL, e.g. https://acme.simprosuite.com"
    )
    simpro_company_id: Annotated[int, Field(ge=0)] = Field(
        default=0, description="Company ID; 0 on single-company builds"
    )
    simpro_api_key: SecretStr | None = Field(
        default=None, description="API key, sent as a Bearer token (never shown)"
    )
    simpro_client_id: str | None = Field(default=None, description="OAuth2 client ID")
    simpro_client_secret: SecretStr | None = Field(
        default=None, description="OAuth2 client secret (never shown)"
    )
    simpro_rate_limit: Annotated[float, Field(gt=0)] = Field(
        default=10.0, description="Requests per second allowed on the build"
    )
    simpro_page_size: Annotated[int, Field(ge=1, le=250)] = Field(
        default=250, description="Records per page (Simpro caps it at 250)"
    )
    simpro_timeout: Annotated[float, Field(gt=0)] = Field(
        default=30.0, description="Seconds to wait for one Simpro answer"
    )
    simpro_max_in_flight: Annotated[int, Field(ge=1, le=64)] = Field(
        default=16, description="Simpro requests allowed in flight at once"
    )
    simpro_retry_attempts: Annotated[int, Field(ge=1, le=50)] = Field(
        default=8, description="Attempts per Simpro request before giving up"
    )
    simpro_retry_timeout: Annotated[float, Field(gt=0)] = Field(
        default=120.0, description="Seconds one Simpro request may spend retrying"
    )

    redis_url: str | None = Field(
        default=None,
        # Left out of repr: the URL may carry a password (redis://:password@host).
        repr=False,
        description="redis://, rediss:// or unix:// URL; unset: an embedded Valkey server",
    )
    redis_sentinels: str = Field(
        default="",
        description="host:port,host:port of Sentinels; set: the master they name is used "
        "(REDIS_URL is then not)",
    )
    redis_sentinel_master: str = Field(
        default="mymaster", min_length=1, description="The master's name in the Sentinels"
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None, description="Password of the Sentinels themselves (never shown)"
    )
    redis_cluster: bool = Field(
        default=False,
        description="REDIS_URL names a node of a Redis Cluster; every key gets a hash tag",
    )
    data_dir: Path = Field(
        default=Path(".simpro-counter"), description="Where the embedded Redis keeps its files"
    )
    key_prefix: str = Field(
        default=DEFAULT_PREFIX, min_length=1, description="Redis key prefix (`fyrup`: original)"
    )
    customer_count_ttl: Annotated[int, Field(ge=60)] = Field(
        default=21600, description="Seconds a value counts as fresh before a refresh is due"
    )
    invoice_types: str = Field(
        default="",
        description="Comma-separated invoice Types that count (e.g. `TaxInvoice`); empty: all",
    )
    invoice_stages: str = Field(
        default="",
        description="Comma-separated invoice Stages that count (e.g. `Approved`); empty: all",
    )
    currency: str = Field(
        default="AUD",
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of the build's currency, sent with `revenue`",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description=f"Bearer token for POST refresh, the admin pages and the details of "
        f"/readyz; at least {ADMIN_TOKEN_MIN_LENGTH} characters",
    )
    cors_origins: str = Field(
        default="*", description="Comma-separated origins allowed to read the counters"
    )
    refresh_check_interval: Annotated[float, Field(gt=0)] = Field(
        default=60.0, description="Seconds between the scheduler's checks for stale values"
    )
    full_reconcile_interval: Annotated[float, Field(ge=60)] = Field(
        default=86400.0,
        description="Seconds between full scans when incremental syncs keep a value fresh",
    )
    refresh_lock_ttl: Annotated[float, Field(ge=1)] = Field(
        default=LOCK_TTL_SECONDS,
        description="Seconds a refresh lock outlives a holder that stopped heart-beating",
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="Secret Simpro signs webhook deliveries with"
    )
    webhook_signature_header: str = Field(
        default="X-Response-Signature", description="Header carrying a delivery's signature"
    )
    webhook_signature_algorithm: Literal["sha1", "sha256"] = Field(
        default="sha1", description="HMAC algorithm of the signature (hex digest of the body)"
    )
    webhook_claim_idle: Annotated[float, Field(gt=0)] = Field(
        default=60.0,
        description="Seconds before a delivery taken by a stopped replica is applied by another",
    )
    webhook_replay_window: Annotated[float, Field(gt=0)] = Field(
        default=3600.0,
        description="Seconds a delivery is accepted after its date_triggered; older ones, "
        "and copies of one already queued, are acknowledged and not applied",
    )
    webhook_backlog_limit: Annotated[int, Field(ge=1)] = Field(
        default=WEBHOOK_BACKLOG_LIMIT,
        description="Deliveries accepted and not yet applied; when that many wait, a new "
        "one is answered 503 with Retry-After and not queued",
    )
    host: str = Field(default="127.0.0.1", description="Interface `serve` listens on")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=8000, description="Port `serve` listens on"
    )
    max_connections: Annotated[int, Field(ge=1)] = Field(
        default=1000,
        description="Connections one process serves at once; while more are open, requests "
        "are answered 503 at once",
    )
    max_request_head: Annotated[int, Field(ge=1024, le=1048576)] = Field(
        default=16384,
        description="Bytes a request's line and headers may take; a larger head is answered "
        "431 and its connection closed",
    )
    forwarded_allow_ips: str = Field(
        default="",
        description="Comma-separated addresses (or CIDR networks, `*`) of proxies whose "
        "X-Forwarded-For/-Proto are believed; empty: those headers are ignored",
    )
    demo: bool = Field(
        default=False,
        description="Demo mode: `/` is a sample homepage with the widget",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, value: str | None) -> str | None:
        if value:
            redis_url_problem(value)
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_are_addresses(cls, value: str) -> str:
        sentinel_addresses(value)
        return value

    @field_validator("admin_token")
    @classmethod
    def _admin_token_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        problem = admin_token_problem(value.get_secret_value() if value is not None else "")
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _one_topology(self) -> Settings:
        if self.redis_cluster and self.redis_sentinels:
            raise ValueError("REDIS_CLUSTER and REDIS_SENTINELS exclude each other")
        if self.redis_cluster and not self.redis_url:
            raise ValueError("REDIS_CLUSTER needs REDIS_URL naming a node of the cluster")
        return self

    @property
    def redis_sentinel_list(self) -> tuple[tuple[str, int], ...]:
        """REDIS_SENTINELS as (host, port) pairs; empty without Sentinels."""
        return sentinel_addresses(self.redis_sentinels)

    @property
    def admin_token_value(self) -> str | None:
        return self.admin_token.get_secret_value() if self.admin_token else None

    @property
    def invoice_type_list(self) -> list[str] | None:
        """INVOICE_TYPES as a list; None counts every type."""
        return _names(self.invoice_types) or None

    @property
    def invoice_stage_list(self) -> list[str] | None:
        """INVOICE_STAGES as a list; None counts every stage."""
        return _names(self.invoice_stages) or None

    @property
    def forwarded_allow_ip_list(self) -> list[str]:
        """FORWARDED_ALLOW_IPS as a list; empty: no proxy is trusted."""
        return _names(self.forwarded_allow_ips)

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]


class CommandSecrets(BaseSettings):
    """The secrets a client-side command (`check`) reads from the environment or `.env`,
    without the service's other settings: a checker may run far from the service."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    admin_token: SecretStr | None = Field(default=None, description="The service's ADMIN_TOKEN")


def redis_url_problem(url: str) -> None:
    """ValueError if redis-py could not use `url`; the message never quotes the URL, which
    may carry a password (urllib's own errors quote the part they cannot read, which for a
    password holding `/` or `#` is a piece of the password)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # parsed on access; raises on a bad port
        if "@" in url and "@" not in parts.netloc:
            raise ValueError("an `@` after the host: a password with an unencoded / # or ?")
    except ValueError:
        raise ValueError(
            "not a URL redis-py can read (not shown: it may hold a password; "
            "percent-encode / # ? @ : in the password)"
        ) from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must start with redis://, rediss:// or unix://")


def admin_token_problem(token: str) -> str | None:
    """Why `token` cannot be ADMIN_TOKEN, or None (an empty one means unset)."""
    # A short token can be guessed despite the throttle.
    if 0 < len(token) < ADMIN_TOKEN_MIN_LENGTH:
        return (
            f"must be at least {ADMIN_TOKEN_MIN_LENGTH} characters, it has {len(token)}; "
            f"make one with: {MAKE_TOKEN}"
        )
    return None


def sentinel_addresses(text: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` as pairs (ValueError naming the bad entry, never a secret)."""
    addresses = []
    for entry in _names(text):
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry!r} is not host:port")
        addresses.append((host.strip("[]"), int(port)))
    return tuple(addresses)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def load_settings() -> Settings:
    """Read the settings, or raise :class:`ConfigError` naming the first bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
    message = error["msg"].removeprefix("Value error, ")
    # The offending value is left out on purpose: it might be a secret.
    return f"{name} is invalid: {message}. Fix it in the environment or .env ({DEMO_HINT})."


def simpro_config(settings: Settings) -> SimproConfig:
    """The Simpro part of the settings, or :class:`ConfigError` saying what to set."""
    base_url = (settings.simpro_base_url or "").strip()
    if not base_url:
        raise ConfigError(
            "SIMPRO_BASE_URL is not set: set it to your build's URL, e.g. "
            f"https://acme.simprosuite.com ({DEMO_HINT})."
        )
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(
            "SIMPRO_BASE_URL must start with https:// (e.g. https://acme.simprosuite.com)."
        )
    if base_url.startswith("http://") and not _is_loopback_url(base_url):
        # The API key or client secret goes in every request: never over plain HTTP
        # beyond this machine (the simulator of the demo and tests listens on loopback).
        raise ConfigError(
            "SIMPRO_BASE_URL must use https:// (http:// only to 127.0.0.1, localhost or "
            "[::1]): the credentials would be sent in clear."
        )
    api_key = _given(settings.simpro_api_key)
    client_secret = _given(settings.simpro_client_secret)
    has_oauth = bool(settings.simpro_client_id or client_secret)
    if not api_key and not has_oauth:
        raise ConfigError(
            "No Simpro credentials: set SIMPRO_API_KEY, or SIMPRO_CLIENT_ID and "
            f"SIMPRO_CLIENT_SECRET ({DEMO_HINT})."
        )
    if has_oauth and not (settings.simpro_client_id and client_secret):
        missing = "SIMPRO_CLIENT_SECRET" if settings.simpro_client_id else "SIMPRO_CLIENT_ID"
        raise ConfigError(f"{missing} is not set: OAuth2 needs both client ID and secret.")
    return SimproConfig(
        base_url=base_url,
        company_id=settings.simpro_company_id,
        api_key=api_key,
        client_id=None if api_key else settings.simpro_client_id,
        client_secret=None if api_key else client_secret,
        rate_limit=settings.simpro_rate_limit,
        page_size=settings.simpro_page_size,
        timeout=settings.simpro_timeout,
        max_in_flight=settings.simpro_max_in_flight,
        retry_attempts=settings.simpro_retry_attempts,
        retry_timeout=settings.simpro_retry_timeout,
    )


def _is_loopback_url(url: str) -> bool:
    """Whether `url` names this machine: 127.0.0.0/8, ::1 or `localhost`."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _given(secret: SecretStr | None) -> SecretStr | None:
    """A secret setting, None when unset or set to the empty string."""
    return secret if secret is not None and secret.get_secret_value() else None
