"""The invoice ledger in Redis: customers, invoices and revenue, exact and kept current.

"Unique customers ever invoiced" stays exact under every change (an invoice created,
moved to another customer, re-priced, deleted, or delivered twice) only if we know what
each invoice counted for: its customer, its ex-tax amount and its date. The ledger holds
the invoices the invoice filter counts, under `Keys.ledger` (format 3, `encoding`):

- invoice entries, `customerID|cents|day` (a day is its number since 1970-01-01), in
  hashes of 100 invoices (`entry_bucket:<id // 100>`, field `id % 100`);
- per customer one value, bucketed the same way: its number of invoices and the days of
  its dated ones (`3|19723,19800=2`), so its first day is always known, also after its
  earliest invoice goes (`customer_long` holds the few too long for a bucket);
- `first_day_numbers`: day -> customers whose first invoice is on it (the growth history,
  kept by every event like the counts);
- `customers` / `invoices` / `revenue_cents`: the counts as strings, read with one MGET;
- `version`: INCR on every change; `journal`: capped list of the recent changes.

Small hashes stay in Redis's compact encoding: about 30 bytes per invoice where format 2
(four large hashes, ISO dates, each customer's count kept twice) took 127
(`docs/performance.md`, "Ledger memory"). Format 2's keys have other names, so a format-2
ledger is never misread; values record the format they were built with (`ledgerFormat`),
nothing is published from the ledger until a full refresh has rebuilt it in this format,
and that rebuild removes the keys of formats 1 and 2 (the upgrade in place).

`apply()` is one Lua script per event, so it is atomic and idempotent: an event that
does not change the invoice's entry is a no-op ("unchanged"), which makes duplicate
and replayed webhooks harmless. Money moves with INCRBY/DECRBY on the cents exactly as
they are written in the entry (strings, never Lua floats). `rebuild()` replaces the whole
state from a full scan without any window in which a reader sees a wrong count
(temporary keys, then one swap script), and replays the events that arrived while the
scan ran.

The rooms: `encoding` (the entry and day formats), `plan` (the rebuild's two streaming
passes over the scan's entries, so the new ledger is never held whole in the process),
`scripts` (the Lua, with named keys), `results` (what the operations answer), `store`
(`InvoiceLedgerStore`, and the one translation of Redis errors into `StoreError`).
"""

from simpro_counter.errors import LedgerJournalGapError
from simpro_counter.store.ledger.encoding import (
    BUCKET_SIZE,
    DELETED,
    LEDGER_FORMAT,
    Deleted,
    day_number,
    day_of,
    decode_customer,
    decode_entry,
    encode_customer,
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
    "BUCKET_SIZE",
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
    "day_number",
    "day_of",
    "decode_customer",
    "decode_entry",
    "encode_customer",
    "encode_entry",
]
