"""Configuration of one simulated Simpro build."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import urlsplit

from .query import UNKNOWN_FIELD_MODES, UnknownFields

# Every fault the simulator knows how to inject; see limits.FaultInjector and gate.SimproGate.
FAULT_KINDS: tuple[str, ...] = ("5xx", "drop", "slow", "truncated", "429")
# Which of an invoice's two numbers a webhook's reference.invoiceID holds (unverified).
ReferenceId = Literal["ID", "InternalID"]

# How the build counts its rate limit (Simpro does not publish it): a token bucket that
# allows a burst of `rate`, or at most `rate` requests in any sliding one-second window.
LimiterShape = Literal["bucket", "sliding"]
LIMITER_SHAPES: tuple[LimiterShape, ...] = get_args(LimiterShape)


@dataclass(frozen=True)
class SimulatorConfig:
    """What the fake build holds and how badly it behaves."""

    invoices: int = 2000
    customers: int = 400
    seed: int = 1
    rate: float = 10.0  # requests/second for the whole build; 0 = unlimited
    limiter: LimiterShape = "bucket"  # how `rate` is counted; excess answers 429
    latency: float = 0.0  # mean seconds added to each Simpro API answer (jitter +-10%, seeded)
    fault_rate: float = 0.0  # probability that a Simpro API request gets a fault
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    slow_seconds: float = 5.0  # how long a "slow" fault stalls before answering
    api_key: str = "demo-key"
    client_id: str = "demo-client"
    client_secret: str = "demo-secret"
    token_lifetime: int = 3600  # seconds an OAuth2 access token stays valid
    company_ids: tuple[int, ...] = (0,)
    not_modified_status: int = 304  # If-Modified-Since with no changes: 304, or 200 with []
    # A subscription created at start for every invoice.* event (demos and tests);
    # None = no subscription until one is made through setup/webhooks/.
    webhook_url: str | None = None
    webhook_secret: str = "demo-webhook-secret"
    # Strictness: as strict and as lax as Simpro, and both ways where unverified.
    # A filter or orderby on a field the list lacks: "ignore" it, as Simpro does (a typo
    # returns every record), or "reject" it with 422.
    unknown_query_fields: UnknownFields = "ignore"
    # A change of an invoice's Stage (and nothing else) sends invoice.stage.approved or
    # .pending; True sends invoice.updated with it too. Unverified which Simpro does.
    stage_change_sends_updated: bool = False
    # What a webhook's reference.invoiceID holds: the invoice's "ID" (what the API's
    # invoices/{id} takes) or its "InternalID". Unverified which Simpro sends.
    webhook_reference_id: ReferenceId = "ID"
    # A build that does not search on `ID` (SIMPRO.md: unverified for invoices): filters
    # on the record's own ID (`ID=between(a,b)`, `ID=in(...)`, `ID=gt(n)`, ...) are
    # silently ignored, so such a query answers with every record.
    ignore_id_filters: bool = False
    # A build that does not honour `If-Modified-Since` (absent from Simpro's Swagger
    # file): the header is ignored and every record comes back with 200, never 304.
    ignore_if_modified_since: bool = False

    def __post_init__(self) -> None:
        # Fail at construction rather than with a confusing error mid-request.
        if self.invoices < 0 or self.customers < 0:
            raise ValueError("invoices and customers must be >= 0")
        if self.invoices > 0 and self.customers == 0:
            raise ValueError("invoices need at least one customer")
        if self.rate < 0 or self.latency < 0 or self.slow_seconds < 0:
            raise ValueError("rate, latency and slow_seconds must be >= 0")
        if self.limiter not in LIMITER_SHAPES:
            raise ValueError(f"limiter must be one of {LIMITER_SHAPES}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be within [0, 1]")
        unknown = [kind for kind in self.fault_kinds if kind not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds: {unknown}; known: {FAULT_KINDS}")
        if not self.company_ids or len(set(self.company_ids)) != len(self.company_ids):
            raise ValueError("company_ids must be non-empty and distinct")
        if self.not_modified_status not in (200, 304):
            raise ValueError("not_modified_status must be 200 or 304")
        if self.token_lifetime <= 0:
            raise ValueError("token_lifetime must be > 0")
        if self.webhook_url is not None:
            problem = callback_url_error(self.webhook_url)
            if problem:
                raise ValueError(f"webhook_url: {problem}")
        if self.unknown_query_fields not in UNKNOWN_FIELD_MODES:
            raise ValueError(f"unknown_query_fields must be one of {UNKNOWN_FIELD_MODES}")
        if self.webhook_reference_id not in get_args(ReferenceId):
            raise ValueError(f"webhook_reference_id must be one of {get_args(ReferenceId)}")


def callback_url_error(url: str) -> str | None:
    """Why a webhook CallbackURL is unusable, or None when it is an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "must be a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http or https URL"
    return None
