"""The HTTP contract as typed models: the JSON answers of the counter endpoints.

One description of each answer, used twice: `web/` lists these models in the OpenAPI
document (the routes still write their bytes by hand, so the answers do not depend on
them), and `simpro-counter check` validates a deployment's answers against them. The
module needs only pydantic, so the check loads none of the service.

Field names are the JSON ones (camelCase through an alias); a model ignores fields it does
not list, and fields with a default may be absent. Numbers are strict: `true` is not a
count and `"5"` is not an integer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Storage = Literal["redis", "memory"]
# Epoch seconds would be about 1.7e9; milliseconds about 1.7e12.
_EPOCH_MS_FLOOR = 100_000_000_000


def _iso_time(value: str) -> str:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("an ISO 8601 time") from None
    return value


def _epoch_ms(value: int) -> int:
    if value <= _EPOCH_MS_FLOOR:
        raise ValueError("epoch milliseconds")
    return value


def _decimal_string(value: str) -> str:
    # A money amount in JSON is a string such as "1234.50": a number could be a float.
    whole, _, cents = value.removeprefix("-").partition(".")
    if not (whole.isdigit() and len(cents) == 2 and cents.isdigit()):
        raise ValueError('a decimal string such as "1234.50"')
    return value


IsoTime = Annotated[str, AfterValidator(_iso_time), Field(examples=["2026-01-31T09:30:00.000Z"])]
EpochMs = Annotated[int, AfterValidator(_epoch_ms), Field(description="Epoch milliseconds")]
DecimalString = Annotated[str, AfterValidator(_decimal_string), Field(examples=["1234.50"])]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]


class Shape(BaseModel):
    """Base of every answer: strict types, JSON (camelCase) names, unknown fields ignored."""

    model_config = ConfigDict(
        strict=True, frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class Health(Shape):
    """`GET /healthz`."""

    status: Literal["ok"]


class _Cached(Shape):
    cached: bool
    cache_age: int = Field(description="Seconds since the value was computed")
    source: Storage
    last_updated: EpochMs
    stale: bool | None = None


class CountAnswer(_Cached):
    """`GET /api/simpro/{metric}` of a count metric once it has a value."""

    count: int


class MoneyAnswer(_Cached):
    """`GET /api/simpro/{metric}` of a money metric (`revenue`) once it has a value."""

    total: DecimalString
    currency: Currency


class PendingAnswer(Shape):
    """`GET /api/simpro/{metric}` before the first value: `count` (or `total`) is null and
    a `Retry-After` header says when to ask again."""

    count: None = None
    total: None = None
    currency: Currency | None = None
    cached: Literal[False]
    cache_age: None
    last_updated: None
    is_refreshing: bool
    message: str
    source: Storage


class _Status(Shape):
    last_updated: IsoTime | None
    ttl: int = Field(description="Seconds until the value is due for a refresh")
    next_refresh: IsoTime | None
    is_refreshing: bool
    storage: Storage
    stale: bool | None = None
    last_error: str | None = None
    last_error_at: IsoTime | None = None
    last_success_at: IsoTime | None = None
    last_refresh: dict[str, object] = Field(
        default_factory=dict, description="The last refresh's report (display only)"
    )


class CountStatus(_Status):
    """`GET /api/simpro/{metric}/refresh` of a count metric."""

    count: int | None


class MoneyStatus(_Status):
    """`GET /api/simpro/{metric}/refresh` of a money metric."""

    total: DecimalString | None
    currency: Currency


class _Refreshed(Shape):
    success: bool
    total_invoices: int | None = Field(description="Invoices read; null for jobs and quotes")
    duration: int | float | None = Field(description="Seconds the refresh took")
    ttl: int
    next_refresh: IsoTime
    storage: Storage
    pages: int | None = None
    requests: int | None = None
    retries: int | None = None
    last_sync: dict[str, object] | None = None


class CountRefreshed(_Refreshed):
    """`POST /api/simpro/{metric}/refresh` of a count metric, after the refresh."""

    count: int


class MoneyRefreshed(_Refreshed):
    """`POST /api/simpro/{metric}/refresh` of a money metric, after the refresh."""

    total: DecimalString
    currency: Currency


class RefreshStarted(Shape):
    """`POST /api/simpro/{metric}/refresh?background=true`: 202, the refresh runs behind."""

    success: Literal[True]
    is_refreshing: Literal[True]
    message: str
    storage: Storage


class RefreshRefused(Shape):
    """`POST /api/simpro/{metric}/refresh`: 409 while one runs, 502 when Simpro failed."""

    success: Literal[False]
    error: str
    is_refreshing: bool | None = None
    storage: Storage


class Refusal(Shape):
    """A refused request: 401 (no or a wrong token), 403 (refreshing disabled), 404 (an
    unknown metric)."""

    success: Literal[False]
    error: str


class InvalidRequest(Refusal):
    """422: a query parameter that is not valid. `detail` is FastAPI's list of errors."""

    detail: list[dict[str, object]]


class InitAnswer(Shape):
    """`GET /api/init`: starts the first refreshes of an empty cache."""

    success: bool
    message: str
    timestamp: IsoTime
    cached: bool | None = None
    refresh_started: bool | None = None


class HistoryPoint(Shape):
    period: str
    new: int
    cumulative: int


class HistoryAnswer(Shape):
    """`GET /api/simpro/customers/history`: new customers per period, oldest first."""

    interval: str
    history: list[HistoryPoint]
    total: int
    undated: int = Field(description="Customers without a dated invoice")
    last_updated: IsoTime | None = None


class HistoryUnavailable(Shape):
    """`GET /api/simpro/customers/history`: 503 until the first full scan has finished."""

    interval: str
    history: None
    error: str


class WebhookAccepted(Shape):
    """`POST /api/simpro/webhooks`: 200 for every correctly signed delivery."""

    accepted: Literal[True]
    queued: bool
    event: str
    id: int | None = None
    reason: Literal["unused", "stale", "replayed"] | None = Field(
        default=None, description="Why a delivery was not queued"
    )


class WebhookRefused(Shape):
    """`POST /api/simpro/webhooks`: 400, 401, 413, 503; nothing was queued."""

    accepted: Literal[False]
    error: str


class RedisReadiness(Shape):
    ok: bool
    location: str | None = None
    storage: Storage | None = None
    error: str | None = None


class SimproReadiness(Shape):
    ok: bool
    detail: str | None = None


class Readiness(Shape):
    """`GET /readyz`: 200 when ready, 503 (same shape) when Redis or Simpro is failing."""

    ready: bool
    redis: RedisReadiness
    simpro: SimproReadiness


MetricAnswer = CountAnswer | MoneyAnswer | PendingAnswer
StatusAnswer = CountStatus | MoneyStatus
RefreshedAnswer = CountRefreshed | MoneyRefreshed
