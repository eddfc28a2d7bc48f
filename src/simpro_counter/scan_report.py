"""What a full scan reports, how it reports progress, and the ID ranges it reads by.

Kept apart from :mod:`simpro_counter.scan`, whose one job is the proof.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from simpro_counter.build_quirks import Ignored, note

# An ID range with open ends: (None, None) is every invoice.
IdRange = tuple[int | None, int | None]


class ScanObserver(Protocol):
    """Receives progress while a scan runs (the CLI draws a progress bar from it)."""

    def started(self, pages: int | None, records: int | None) -> None: ...

    def page_done(self, records: int, retries: int) -> None: ...

    def reconciling(self, reason: str) -> None: ...


@dataclass(frozen=True)
class ScanReport:
    """The proven result of a full scan and what it cost."""

    count: int
    """Distinct customers over the invoices counted."""
    total_invoices: int
    """Every invoice Simpro holds (its `Result-Total`), counted by the filter or not."""
    invoices: int
    """Invoices counted (those the invoice filter accepts)."""
    revenue_cents: int
    """Sum of `Total.ExTax` over the invoices counted, in cents."""
    invoices_without_customer: int
    pages: int
    requests: int
    retries: int
    duration: float
    reconciled: int
    """Invoices re-read because they moved while the scan ran."""
    cursor: str | None
    """`Date` of the scan's first answer: changes after it are for an incremental sync."""
    ignored: tuple[Ignored, ...] = ()
    """What the build was proven to ignore while the scan ran (ID filters, If-Modified-Since)."""

    @property
    def notes(self) -> tuple[str, ...]:
        """What each ignored feature meant for the scan, one sentence each."""
        return tuple(note(ignored, "scan") for ignored in self.ignored)

    def as_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "count": self.count,
            "totalInvoices": self.total_invoices,
            "invoices": self.invoices,
            "revenueCents": self.revenue_cents,
            "invoicesWithoutCustomer": self.invoices_without_customer,
            "pages": self.pages,
            "requests": self.requests,
            "retries": self.retries,
            "duration": round(self.duration, 3),
            "reconciled": self.reconciled,
            "cursor": self.cursor,
        }
        if self.ignored:
            shown["buildIgnores"] = list(self.ignored)
            shown["notes"] = list(self.notes)
        return shown


class NullObserver:
    def started(self, pages: int | None, records: int | None) -> None:
        pass

    def page_done(self, records: int, retries: int) -> None:
        pass

    def reconciling(self, reason: str) -> None:
        pass


def range_filter(id_range: IdRange) -> dict[str, str]:
    lo, hi = id_range
    if lo is None and hi is None:
        return {}
    if lo is None:
        return {"ID": f"le({hi})"}
    if hi is None:
        return {"ID": f"ge({lo})"}
    return {"ID": f"between({lo},{hi})"}


def page_ranges(first_ids: list[int]) -> list[IdRange]:
    """The ID line cut at the first ID of every page: ranges of about one page each."""
    starts = sorted(set(first_ids))
    if not starts:
        return [(None, None)]
    return [
        (None if i == 0 else start, None if i == len(starts) - 1 else starts[i + 1] - 1)
        for i, start in enumerate(starts)
    ]
