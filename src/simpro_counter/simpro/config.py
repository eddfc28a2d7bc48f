"""What the Simpro client needs to talk to one build, as one frozen value.

Built from the environment by :func:`simpro_counter.settings.simpro_config`; this package
never reads the settings itself, so the client can be used (tests, benchmarks) without them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr


@dataclass(frozen=True)
class SimproConfig:
    """What the Simpro client needs, validated: a URL and exactly one way to authenticate.

    The API key and client secret stay :class:`~pydantic.SecretStr` (shown as `**********`
    in repr, str, logs and tracebacks) until `auth.py` builds the request that sends them.
    """

    base_url: str
    company_id: int = 0
    api_key: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    rate_limit: float = 10.0
    page_size: int = 250
    timeout: float = 30.0
    max_in_flight: int = 16
    retry_attempts: int = 8
    retry_timeout: float = 120.0

    @property
    def api_root(self) -> str:
        return self.base_url.rstrip("/") + "/api/v1.0/"

    @property
    def credential_setting(self) -> str:
        """The setting(s) to check when Simpro refuses the credentials."""
        return (
            "SIMPRO_API_KEY"
            if self.api_key is not None
            else "SIMPRO_CLIENT_ID and SIMPRO_CLIENT_SECRET"
        )
