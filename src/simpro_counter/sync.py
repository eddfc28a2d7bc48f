"""Incremental sync: only the invoices changed since the last sync, applied to the ledger.

`If-Modified-Since` carries the `Date` of the previous sync's first answer; both `304` and
an empty `200` mean nothing changed, which costs one request. Deletions do not show up
in such a list — webhooks and the periodic full reconciliation cover them.

A build may ignore the header (it is absent from Simpro's Swagger file) and answer with
every invoice. The sync does not depend on it: it applies everything it is sent, so it is
then a full re-read through the ledger, exact for every invoice it reads. It notices by
asking for `DateModified` too: a record modified more than a second before the cursor
proves the header was ignored (see :mod:`simpro_counter.build_quirks`), and the report
says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from simpro_counter.build_quirks import (
    DATE_MODIFIED,
    IF_MODIFIED_SINCE,
    Ignored,
    http_date,
    modified_before,
    note,
)
from simpro_counter.metrics import InvoiceFilter
from simpro_counter.metrics.invoices import parse_invoice
from simpro_counter.scan import INVOICES, SCAN_COLUMNS
from simpro_counter.simpro import SimproClient
from simpro_counter.store.ledger import DELETED, InvoiceLedgerStore, LedgerCounts

# What the ledger needs, and `DateModified`, which proves a build ignored the header.
SYNC_COLUMNS = tuple(dict.fromkeys((*SCAN_COLUMNS, DATE_MODIFIED)))


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
    ignored: tuple[Ignored, ...] = ()
    """What the build was proven to ignore (only `If-Modified-Since` here)."""

    @property
    def notes(self) -> tuple[str, ...]:
        """What each ignored feature means for a sync, one sentence each."""
        return tuple(note(ignored, "sync") for ignored in self.ignored)

    def as_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "changed": self.changed,
            "requests": self.requests,
            "retries": self.retries,
            "duration": round(self.duration, 3),
        }
        if self.ignored:
            shown["buildIgnores"] = list(self.ignored)
            shown["notes"] = list(self.notes)
        return shown


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
    since = http_date(cursor)
    header_ignored = False
    async for page in client.pages(
        INVOICES, columns=SYNC_COLUMNS, params={"orderby": "ID"}, if_modified_since=cursor
    ):
        next_cursor = next_cursor or page.date
        for record in page.records:
            header_ignored = header_ignored or modified_before(record, since)
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
        ignored=(IF_MODIFIED_SINCE,) if header_ignored else (),
    )
