"""What the ledger answers: its counts, its first days, and what an apply or rebuild did."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal, NamedTuple

from simpro_counter.metrics import MetricKind, invoice_metrics

Outcome = Literal["created", "updated", "deleted", "unchanged"]
OUTCOMES: Final[frozenset[str]] = frozenset({"created", "updated", "deleted", "unchanged"})


class LedgerCounts(NamedTuple):
    customers: int
    invoices: int
    revenue_cents: int
    version: int

    def metric_values(self) -> dict[str, int]:
        """The value of each invoice metric of the registry (revenue in cents).

        Each invoice metric is one of the ledger's counts, told apart by its kind: the
        distinct customers, the count of invoices, the sum of their cents.
        """
        by_kind: dict[MetricKind, int] = {
            "distinct": self.customers,
            "count": self.invoices,
            "sum": self.revenue_cents,
        }
        return {metric.name: by_kind[metric.kind] for metric in invoice_metrics()}

    @classmethod
    def parse(cls, values: Sequence[str | bytes | None]) -> LedgerCounts:
        """The counts from Redis's replies (customers, invoices, cents, version; absent: 0)."""
        customers, invoices, cents, version = (int(v or 0) for v in values)
        return cls(customers, invoices, cents, version)


class FirstDays(NamedTuple):
    days: dict[date, int]
    """Day -> customers whose first (dated) invoice is on that day."""
    customers: int
    """Customers with at least one invoice, dated or not."""
    version: int
    """The ledger version these were read at."""


@dataclass(frozen=True)
class LedgerChange:
    """What `apply()` did and the counts right after it."""

    outcome: Outcome
    counts: LedgerCounts


@dataclass(frozen=True)
class LedgerRebuild:
    """The counts right after a rebuild and how many journal events were replayed."""

    counts: LedgerCounts
    replayed: int
