"""The exact full scan: every invoice read once, unique customers counted, completeness proven.

Pages are read concurrently by page number (ordered by ID), which is fast but not stable
under change: deleting an invoice shifts every later record one place towards the front,
so a record can slip past a page boundary unseen. (New invoices get the highest IDs, so
they only ever append.) The scan is built so that such a loss is always detected:

1. Page 1 and the page of newest invoices (ordered by -ID) are read together; the latter
   is the snapshot: the total and the newest invoice ID from one answer. The pages in
   between are read after both, as pages of an ID range, so nothing that happens at
   either end can shift them.
2. Invoices changed meanwhile (created, or moved to another customer) are caught up with
   one `If-Modified-Since` request, and Simpro's total is read again.
3. Invoices deleted meanwhile are counted: total at the snapshot + invoices created since
   (IDs above the snapshot's newest) - total at the end. If any were, every page's ID
   range is re-read by ID filter, which does not shift under change.
4. The distinct invoice IDs held must then equal Simpro's `Result-Total`; a remaining
   difference is located by comparing per-range counts, halving the ranges until the
   differing ones are small enough to re-read.

A scan that cannot close the gap within `max_rounds` raises :class:`ScanIncompleteError`;
a partial count is never returned.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

from simpro_counter.errors import ScanIncompleteError, SimproDataError
from simpro_counter.metrics import InvoiceFilter, InvoiceFold, scan_columns
from simpro_counter.simpro import SimproClient
from simpro_counter.simpro.client import Page, Params, Record

INVOICES = "invoices"
# Every column the invoice metrics, the growth history and the invoice filter need.
SCAN_COLUMNS = scan_columns()

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

    def as_json(self) -> dict[str, Any]:
        return {
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


def range_filter(id_range: IdRange) -> dict[str, str]:
    lo, hi = id_range
    if lo is None and hi is None:
        return {}
    if lo is None:
        return {"ID": f"le({hi})"}
    if hi is None:
        return {"ID": f"ge({lo})"}
    return {"ID": f"between({lo},{hi})"}


class _NullObserver:
    def started(self, pages: int | None, records: int | None) -> None:
        pass

    def page_done(self, records: int, retries: int) -> None:
        pass

    def reconciling(self, reason: str) -> None:
        pass


async def scan_customers(
    client: SimproClient,
    *,
    observer: ScanObserver | None = None,
    max_rounds: int = 3,
    invoice_filter: InvoiceFilter | None = None,
) -> ScanReport:
    """Read every invoice and count distinct customers, or raise; never a partial count."""
    report, _ = await scan_invoices(
        client, observer=observer, max_rounds=max_rounds, invoice_filter=invoice_filter
    )
    return report


async def scan_invoices(
    client: SimproClient,
    *,
    observer: ScanObserver | None = None,
    max_rounds: int = 3,
    invoice_filter: InvoiceFilter | None = None,
) -> tuple[ScanReport, InvoiceFold]:
    """As :func:`scan_customers`, also returning the fold: every invoice as it was counted."""
    scan = _Scan(client, observer or _NullObserver(), max_rounds, InvoiceFold(invoice_filter))
    report = await scan.run()
    return report, scan.fold


class _Scan:
    def __init__(
        self, client: SimproClient, observer: ScanObserver, max_rounds: int, fold: InvoiceFold
    ) -> None:
        self.client = client
        self.observer = observer
        self.max_rounds = max_rounds
        self.fold = fold
        self.pages = 0
        self.reconciled = 0

    async def run(self) -> ScanReport:
        started = time.monotonic()
        requests_before = self.client.stats.requests
        retries_before = self.client.stats.retries
        marks, cursor, (total_at_start, newest_at_start) = await self._read_all_pages()
        total, _ = await asyncio.gather(self.client.count(INVOICES), self._catch_up(cursor))
        created = self.fold.count_above(newest_at_start)
        deleted = total_at_start + created - total
        reread_all = deleted > 0
        rounds = 0
        while reread_all or len(self.fold) != total:
            if rounds == self.max_rounds:
                raise ScanIncompleteError(
                    f"invoices kept changing while they were counted: after {rounds} "
                    f"re-reads {len(self.fold)} distinct invoices were seen "
                    f"but Simpro reports {total}; the previous count is kept"
                )
            rounds += 1
            if reread_all:
                self.observer.reconciling(
                    f"{deleted} invoice(s) deleted during the scan: re-reading by ID range"
                )
                await asyncio.gather(*(self._refetch(r) for r in _page_ranges(marks)))
                reread_all = False
            else:
                self.observer.reconciling(
                    f"{len(self.fold)} invoices seen, Simpro reports {total}: "
                    "locating the difference"
                )
                await self._locate_and_repair((None, None), total)
            total = await self.client.count(INVOICES)
        return ScanReport(
            count=self.fold.customers(),
            total_invoices=total,
            invoices=self.fold.invoices(),
            revenue_cents=self.fold.revenue_cents(),
            invoices_without_customer=self.fold.invoices_without_customer(),
            pages=self.pages,
            requests=self.client.stats.requests - requests_before,
            retries=self.client.stats.retries - retries_before,
            duration=time.monotonic() - started,
            reconciled=self.reconciled,
            cursor=cursor,
        )

    async def _read_all_pages(self) -> tuple[list[int], str | None, tuple[int, int]]:
        """Every page once: the first ID of each page, the cursor, and the snapshot.

        The snapshot is the page of newest invoices (ordered by -ID): its `Result-Total` and
        first ID are the total and the newest ID at one instant, and its records are needed
        anyway. What lies between page 1 and that page is read as pages of an ID range, so
        changes at either end cannot shift it.
        """
        size = self.client.config.page_size
        first, newest = await asyncio.gather(
            self.client.page(INVOICES, 1, columns=SCAN_COLUMNS, params={"orderby": "ID"}),
            self.client.page(INVOICES, 1, columns=SCAN_COLUMNS, params={"orderby": "-ID"}),
        )
        if newest.total is None:
            raise SimproDataError(
                "Simpro sent no Result-Total header, so the scan cannot prove it is complete"
            )
        total_at_start = newest.total
        self.observer.started(max(1, math.ceil(total_at_start / size)), total_at_start)
        marks: list[int] = []
        low = self._take(first, marks, "invoices page 1")
        newest_ids = self._take(newest, marks, "newest invoices")
        between = total_at_start - len(first.records) - len(newest.records)
        if low is not None and newest_ids is not None and between > 0:
            id_range = f"{low[1] + 1},{newest_ids[0] - 1}"
            async for page in self.client.pages(
                INVOICES,
                columns=SCAN_COLUMNS,
                params={"orderby": "ID", "ID": f"between({id_range})"},
                page_count_hint=math.ceil(between / size),
            ):
                self._take(page, marks, f"invoices between({id_range}) page {page.number}")
        newest_id = -1 if newest_ids is None else newest_ids[1]
        return marks, first.date, (total_at_start, newest_id)

    def _apply(self, record: Record, where: str) -> int:
        invoice_id, entry = self.fold.parse(record, where)
        self.fold.put(invoice_id, entry)
        return invoice_id

    def _take(self, page: Page, marks: list[int], where: str) -> tuple[int, int] | None:
        """Apply a page to the fold; its lowest and highest invoice IDs (None when empty)."""
        self.pages += 1
        ids = [self._apply(record, where) for record in page.records]
        self.observer.page_done(len(page.records), self.client.stats.retries)
        if not ids:
            return None
        marks.append(min(ids))
        return min(ids), max(ids)

    async def _catch_up(self, cursor: str | None) -> None:
        """Apply invoices changed since the scan began (e.g. moved to another customer).

        Costs one request when nothing changed. A build that ignores `If-Modified-Since`
        answers with every invoice; that is noticed on the first page and not read further.
        """
        if cursor is None:
            return
        async for page in self.client.pages(
            INVOICES, columns=SCAN_COLUMNS, params={"orderby": "ID"}, if_modified_since=cursor
        ):
            if page.number == 1 and (page.total or 0) >= max(len(self.fold), 1):
                return
            for record in page.records:
                self._apply(record, f"invoices changed since {cursor}")
                self.reconciled += 1

    async def _refetch(self, id_range: IdRange) -> None:
        records: list[Record] = []
        params: Params = {"orderby": "ID", **range_filter(id_range)}
        async for page in self.client.pages(INVOICES, columns=SCAN_COLUMNS, params=params):
            self.pages += 1
            records.extend(page.records)
        # Forget every invoice held in the range, then take what Simpro holds there now.
        for invoice_id in self.fold.ids_between(*id_range):
            self.fold.remove(invoice_id)
        for record in records:
            self._apply(record, f"invoices {id_range}")
        self.reconciled += len(records)

    async def _locate_and_repair(self, id_range: IdRange, known_total: int | None = None) -> None:
        """Halve the range until the ranges whose counts differ are small, then re-read them."""
        if known_total is None:
            known_total = await self.client.count(INVOICES, params=range_filter(id_range))
        local = self.fold.ids_between(*id_range)
        if len(local) == known_total:
            return
        if known_total <= self.client.config.page_size or len(local) < 2:
            await self._refetch(id_range)
            return
        middle = local[len(local) // 2]
        await asyncio.gather(
            self._locate_and_repair((id_range[0], middle - 1)),
            self._locate_and_repair((middle, id_range[1])),
        )


def _page_ranges(first_ids: list[int]) -> list[IdRange]:
    """The ID line cut at the first ID of every page: ranges of about one page each."""
    starts = sorted(set(first_ids))
    if not starts:
        return [(None, None)]
    return [
        (None if i == 0 else start, None if i == len(starts) - 1 else starts[i + 1] - 1)
        for i, start in enumerate(starts)
    ]
