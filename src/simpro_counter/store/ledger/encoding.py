"""The ledger's format: how an invoice entry and a customer's days are written in Redis.

Format 2 (`LEDGER_FORMAT`): `invoice_entries` holds `customerID|cents|YYYY-MM-DD` per
invoice (customer "" for an invoice without customer, date "" when Simpro sent none),
`customer_days` holds `YYYY-MM-DD=n` per day, sorted and comma-joined. The Lua scripts
(`scripts.py`) parse the same strings; a deletion travels to them as `DELETED_MARK`.
"""

from __future__ import annotations

import enum
from collections import Counter
from datetime import date
from typing import Final

from simpro_counter.metrics.invoices import InvoiceEntry

# The layout of `invoice_entries` values; stored in the details of values built on it.
LEDGER_FORMAT: Final = 2


class Deleted(enum.Enum):
    """Marks an invoice that no longer counts: deleted, or left out by the invoice filter."""

    DELETED = "deleted"


DELETED: Final = Deleted.DELETED

# How a deletion travels to Lua and sits in the journal.
DELETED_MARK: Final = "d"

# Redis counters are signed 64-bit: an amount must stay far enough inside that a sum of
# many cannot overflow (Simpro amounts are bounded much lower by `ex_tax_cents`).
_MAX_CENTS = 2**62


def encode_entry(entry: InvoiceEntry) -> str:
    """`customerID|cents|YYYY-MM-DD`, customer and date empty when unknown.

    Raises ValueError for an amount a Redis counter could not hold, before anything is
    written (a Lua script failing half-way would leave the counts inconsistent).
    """
    customer, cents, issued = entry
    if not -_MAX_CENTS < cents < _MAX_CENTS:
        raise ValueError(f"{cents} cents is beyond what the ledger can add up exactly")
    return (
        f"{'' if customer is None else int(customer)}|{int(cents)}|"
        f"{'' if issued is None else issued.isoformat()}"
    )


def decode_entry(text: str) -> InvoiceEntry:
    """The entry `encode_entry` wrote (kept beside it: the format's two directions)."""
    customer, cents, issued = text.split("|")
    return (
        int(customer) if customer else None,
        int(cents),
        date.fromisoformat(issued) if issued else None,
    )


def encode_days(days: Counter[date]) -> str:
    """A customer's invoice days as `customer_days` keeps them: `2024-03-05=2,2024-07-01=1`."""
    return ",".join(f"{day.isoformat()}={n}" for day, n in sorted(days.items()) if n > 0)
