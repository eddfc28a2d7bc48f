"""Values kept in the store: a metric's value with its freshness, and refresh status."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class MetricValue:
    """A published value of one metric and what is needed to judge its freshness."""

    metric: str
    value: int
    computed_at: float
    """Epoch seconds at which the scan that produced it finished."""
    ttl: int
    """Seconds the value counts as fresh; it is still served (as stale) afterwards."""
    fence: int = 0
    """Fencing token of the refresh that produced it; higher is newer."""
    details: dict[str, Any] = field(default_factory=dict)
    """The refresh report: totalInvoices, duration, pages, requests, retries, ..."""

    @property
    def ledger_version(self) -> int:
        """The invoice ledger version the value was read at; -1 when not from the ledger.

        Values that share a fence (a full refresh and the webhook events published on top
        of it) are ordered by it, so counts read earlier never overwrite later ones.
        """
        return int(self.details.get("ledgerVersion", -1))

    def order(self) -> tuple[int, int]:
        """What decides whether a publish may replace the stored value: (fence, version)."""
        return (self.fence, self.ledger_version)

    def age(self, now: float) -> float:
        return max(0.0, now - self.computed_at)

    def expires_at(self) -> float:
        return self.computed_at + self.ttl

    def is_stale(self, now: float) -> bool:
        return now >= self.expires_at()

    def meta_json(self) -> str:
        return json.dumps(
            {
                "computed_at": self.computed_at,
                "ttl": self.ttl,
                "fence": self.fence,
                "details": self.details,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_parts(
        cls, metric: str, value: str | bytes, updated: str | bytes | None, meta: str | bytes | None
    ) -> MetricValue:
        """Rebuild from the stored keys; tolerates the original's keys without meta."""
        parsed: dict[str, Any] = json.loads(meta) if meta else {}
        computed_at = parsed.get("computed_at")
        if computed_at is None:
            computed_at = _epoch_seconds(updated)
        return cls(
            metric=metric,
            value=int(value),
            computed_at=float(computed_at),
            ttl=int(parsed.get("ttl", 0)),
            fence=int(parsed.get("fence", 0)),
            details=dict(parsed.get("details", {})),
        )


def _epoch_seconds(updated: str | bytes | None) -> float:
    """`..._updated` as written by this service (epoch ms) or the original (ms or ISO)."""
    if updated is None:
        return 0.0
    text = updated.decode() if isinstance(updated, bytes) else updated
    try:
        number = float(text)
    except ValueError:
        from datetime import datetime

        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    return number / 1000 if number > 1e11 else number


@dataclass(frozen=True)
class RefreshStatus:
    """What the last refreshes of a metric did; shown by `/refresh` status and `status`."""

    metric: str
    last_started_at: float | None = None
    last_finished_at: float | None = None
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_report: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> RefreshStatus:
        return cls(**json.loads(text))
