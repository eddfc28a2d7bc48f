"""The invoice ledger in Redis: customers, invoices and revenue, exact and kept current.

"Unique customers ever invoiced" stays exact under every change (an invoice created,
moved to another customer, re-priced, deleted, or delivered twice) only if we know what
each invoice counted for: its customer, its ex-tax amount and its date. The ledger holds
the invoices the invoice filter counts, under `Keys.ledger`:

- `invoice_entries`: hash invoiceID -> `customerID|cents|YYYY-MM-DD` (customer "" for an
  invoice without customer, date "" when Simpro sent none);
- `customer_invoices`: hash customerID -> number of its invoices (absent at 0);
- `customers` / `invoices` / `revenue_cents`: the counts as strings, read with one MGET;
- `customer_days`: hash customerID -> the days of its dated invoices, `YYYY-MM-DD=n`
  sorted and comma-joined; `first_days`: hash day -> customers whose first invoice is on
  it (the growth history, kept by every event like the counts);
- `version`: INCR on every change; `journal`: capped list of the recent changes.

Format 2 (`LEDGER_FORMAT`): format 1, the first version, kept only the customer, under
`invoice_customer`. The new hash has a new name, so a format-1 ledger is never misread;
values record the format they were built with (`ledgerFormat`) and nothing is published
from the ledger until a full refresh has rebuilt it in this format.

`apply()` is one Lua script per event, so it is atomic and idempotent: an event that
does not change the invoice's entry is a no-op ("unchanged"), which makes duplicate
and replayed webhooks harmless. Money moves with INCRBY/DECRBY on the cents exactly as
they are written in the entry (strings, never Lua floats). `rebuild()` replaces the whole
state from a full scan without any window in which a reader sees a wrong count
(temporary keys, then one swap script), and replays the events that arrived while the
scan ran. Memory per 100,000 invoices (about 12.7 MB) and the alternatives measured:
`docs/performance.md`, "Ledger memory".

The rooms: `encoding` (the entry and day formats), `scripts` (the Lua, with named keys),
`results` (what the operations answer), `store` (`InvoiceLedgerStore`, and the one
translation of Redis errors into `StoreError`).
"""

from simpro_counter.errors import LedgerJournalGapError
from simpro_counter.store.ledger.encoding import (
    DELETED,
    LEDGER_FORMAT,
    Deleted,
    decode_entry,
    encode_days,
    encode_entry,
)
from simpro_counter.store.ledger.results import (
    FirstDays,
    LedgerChange,
    LedgerCounts,
    LedgerRebuild,
    Outcome,
)
from simpro_counter.store.ledger.store import InvoiceLedgerStore

__all__ = [
    "DELETED",
    "LEDGER_FORMAT",
    "Deleted",
    "FirstDays",
    "InvoiceLedgerStore",
    "LedgerChange",
    "LedgerCounts",
    "LedgerJournalGapError",
    "LedgerRebuild",
    "Outcome",
    "decode_entry",
    "encode_days",
    "encode_entry",
]
