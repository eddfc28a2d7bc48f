"""Incremental sync: only the invoices changed since the last sync, applied to the ledger.

`If-Modified-Since` carries the `Date` of the previous sync's first answer; both `304` and
an empty `200` mean nothing changed, which costs one request. Deletions do not show up
in such a list — webhooks and the periodic full reconciliation cover them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from simpro_counter.metrics import InvoiceFilter
from simpro_counter.metrics.invoices import parse_invoice
from simpro_counter.scan import INVOICES, SCAN_COLUMNS
from simpro_counter.simpro import SimproClient
from simpro_counter.store.ledger import DELETED, InvoiceLedgerStore, LedgerCounts


@dataclass(frozen=True)
class SyncReport:
    changed: int
    """Invoices Simpro reported as changed (each applied to the ledger)."""
    counts: LedgerCounts
    """The ledger's counts afterwards."""
    cursor: str
    """Where the next sync starts: the `Date` of this sync's first answer."""
    requests: int
    retries: int
    duration: float

    def as_json(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "requests": self.requests,
            "retries": self.retries,
            "duration": round(self.duration, 3),
        }


async def sync_changes(
    client: SimproClient, ledger: InvoiceLedgerStore, cursor: str, invoice_filter: InvoiceFilter
) -> SyncReport:
    """Apply every invoice changed since `cursor` to the ledger.

    Each record is parsed under `invoice_filter` (the ledger holds the state, so nothing
    is folded here); a changed invoice the filter now leaves out leaves the ledger.
    """
    started = time.monotonic()
    requests_before = client.stats.requests
    retries_before = client.stats.retries
    changed = 0
    next_cursor: str | None = None
    async for page in client.pages(
        INVOICES, columns=SCAN_COLUMNS, params={"orderby": "ID"}, if_modified_since=cursor
    ):
        next_cursor = next_cursor or page.date
        for record in page.records:
            invoice_id, entry = parse_invoice(record, invoice_filter, "changed invoice")
            await ledger.apply(invoice_id, DELETED if entry is None else entry)
            changed += 1
    return SyncReport(
        changed=changed,
        counts=await ledger.counts(),
        cursor=next_cursor or cursor,
        requests=client.stats.requests - requests_before,
        retries=client.stats.retries - retries_before,
        duration=time.monotonic() - started,
    )
