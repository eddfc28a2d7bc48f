"""Values kept in the store: a metric's value with its freshness, and refresh status.

A value carries two kinds of details. Its :class:`Provenance` (ledger version and format,
invoice filter, sync cursor, last full scan) decides things: the order of publishes, and
whether webhooks and incremental syncs may move the value. Its `report` (totalInvoices,
duration, pages, requests, retries, ...) is only shown. Both are stored together, as the
one `details` object of the meta key, in the shape earlier versions wrote and read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

# The keys of `details` the provenance is stored under (those of the first versions).
_LEDGER_VERSION: Final = "ledgerVersion"
_LEDGER_FORMAT: Final = "ledgerFormat"
_INVOICE_FILTER: Final = "invoiceFilter"
_CURSOR: Final = "cursor"
_FULL_SCAN_AT: Final = "fullScanAt"
PROVENANCE_KEYS: Final = (_LEDGER_VERSION, _LEDGER_FORMAT, _INVOICE_FILTER, _CURSOR, _FULL_SCAN_AT)


@dataclass(frozen=True)
class Provenance:
    """Where a value comes from, as far as the rules that order and move values ask.

    Every field is None when unknown: a count read from `Result-Total`, a value left by an
    earlier version, or a scan whose ledger rebuild failed (no ledger version or format).
    """

    ledger_version: int | None = None
    """The invoice ledger version the value was read at."""
    ledger_format: int | None = None
    """The layout of the ledger it was read from (`store.ledger.LEDGER_FORMAT`)."""
    invoice_filter: str | None = None
    """`InvoiceFilter.describe()` of the scan behind it, e.g. `types=*;stages=*`."""
    cursor: str | None = None
    """Where the next incremental sync starts (the `Date` of an earlier answer)."""
    full_scan_at: float | None = None
    """Epoch seconds of the last full scan behind the value."""

    def built_on(self, ledger_format: int, invoice_filter: str) -> bool:
        """Whether the value was read from a ledger of this format, rebuilt by a full scan
        under this invoice filter."""
        return (
            self.ledger_version is not None
            and self.ledger_format == ledger_format
            and self.invoice_filter == invoice_filter
        )

    def as_json(self) -> dict[str, Any]:
        """The fields that are known, under the keys `details` has always used."""
        fields = {
            _LEDGER_VERSION: self.ledger_version,
            _LEDGER_FORMAT: self.ledger_format,
            _INVOICE_FILTER: self.invoice_filter,
            _CURSOR: self.cursor,
            _FULL_SCAN_AT: self.full_scan_at,
        }
        return {key: known for key, known in fields.items() if known is not None}

    @classmethod
    def from_json(cls, details: Mapping[str, Any]) -> Provenance:
        """Read from a stored `details` object; a field of an unexpected type is unknown
        (the rules compared those with `==` before, so they never matched either)."""
        version = details.get(_LEDGER_VERSION)
        ledger_format = details.get(_LEDGER_FORMAT)
        invoice_filter = details.get(_INVOICE_FILTER)
        cursor = details.get(_CURSOR)
        full_scan_at = details.get(_FULL_SCAN_AT)
        return cls(
            ledger_version=None if version is None else int(version),
            ledger_format=ledger_format if _is_int(ledger_format) else None,
            invoice_filter=invoice_filter if isinstance(invoice_filter, str) else None,
            cursor=None if cursor is None else str(cursor),
            full_scan_at=(
                float(full_scan_at)
                if isinstance(full_scan_at, int | float) and not isinstance(full_scan_at, bool)
                else None
            ),
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
    provenance: Provenance = field(default_factory=Provenance)
    """What the ordering and sync rules read."""
    report: dict[str, Any] = field(default_factory=dict)
    """The refresh report, shown only: totalInvoices, duration, pages, requests, ..."""

    @property
    def details(self) -> dict[str, Any]:
        """The report and the provenance together, as stored and as the API shows them."""
        return {**self.report, **self.provenance.as_json()}

    def with_details(self, details: Mapping[str, Any]) -> MetricValue:
        """This value with its report and provenance read from a `details` object (as a
        value stored by any version would load)."""
        provenance, report = split_details(details)
        return replace(self, provenance=provenance, report=report)

    @property
    def ledger_version(self) -> int:
        """The invoice ledger version the value was read at; -1 when not from the ledger.

        Values that share a fence (a full refresh and the webhook events published on top
        of it) are ordered by it, so counts read earlier never overwrite later ones.
        """
        version = self.provenance.ledger_version
        return -1 if version is None else version

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
        # The provenance stays inside `details`, where replicas of earlier versions read it.
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
        provenance, report = split_details(parsed.get("details") or {})
        return cls(
            metric=metric,
            value=int(value),
            computed_at=float(computed_at),
            ttl=int(parsed.get("ttl", 0)),
            fence=int(parsed.get("fence", 0)),
            provenance=provenance,
            report=report,
        )


def split_details(details: Mapping[str, Any]) -> tuple[Provenance, dict[str, Any]]:
    """A stored `details` object as its provenance and the report (everything else)."""
    report = {key: shown for key, shown in details.items() if key not in PROVENANCE_KEYS}
    return Provenance.from_json(details), report


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
