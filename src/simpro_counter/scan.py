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
   one `If-Modified-Since` request, and Simpro's total is read again. On a build that
   ignores the header that request answers with every invoice; all of it is applied
   (every record is current when read), so the catch-up is then a second full read.
3. Invoices deleted meanwhile are counted: total at the snapshot + invoices created since
   (IDs above the snapshot's newest) - total at the end. If any were, every page's ID
   range is re-read by ID filter, which does not shift under change.
4. The distinct invoice IDs held must then equal Simpro's `Result-Total`; a remaining
   difference is located by comparing per-range counts, halving the ranges until the
   differing ones are small enough to re-read.

Steps 1, 3 and 4 rely on ID filters, which a build may not search on (SIMPRO.md). Every
answer to an ID-filtered query is checked: a record outside the range asked for proves
the filter was ignored (:mod:`simpro_counter.build_quirks`), and the scan then proves
itself by whole passes instead (:meth:`_Scan._exact_by_passes`):

5. A pass is every page read by number (ordered by ID) between two snapshots, before
   (total T, newest ID M) and after (T', and the newest invoices R'). If R' holds an ID
   of M or below (or all T' invoices), every invoice created since the first snapshot
   and still there is in R', so `T + |R' above M| - T'` is the number of invoices of the
   first snapshot deleted meanwhile. When it is 0, those invoices neither moved nor
   shifted (creations only append, and deleting a created one shifts nothing before
   it), so the pass saw each of them at its place: the pass's IDs up to M, which must be
   T, plus R' above M are exactly the invoices at the second snapshot. The catch-up of
   step 2 runs inside the pass, before the second snapshot, so changes made while it
   was read are applied too. Otherwise the pass is repeated from the second snapshot,
   at most `max_rounds` times. The pass of step 1 (its "between" query answered with
   every invoice, read after the first snapshot) counts as the first pass.

A scan that cannot close the gap within `max_rounds` raises :class:`ScanIncompleteError`;
a partial count is never returned.

(Over 400 lines on purpose: each step of the proof above is implemented here, beside it;
the report, the observer and the ID-range helpers live in :mod:`scan_report`, the test
that an answer kept to the ID range asked in :mod:`build_quirks`.)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass
from typing import Any

from simpro_counter.build_quirks import (
    DATE_MODIFIED,
    ID_FILTERS,
    IF_MODIFIED_SINCE,
    Ignored,
    check_in_range,
    http_date,
    modified_before,
    note,
    outside,
)
from simpro_counter.errors import IdFiltersIgnoredError, ScanIncompleteError, SimproDataError
from simpro_counter.metrics import InvoiceFilter, InvoiceFold, scan_columns
from simpro_counter.metrics.invoices import InvoiceEntry, parse_invoice
from simpro_counter.scan_report import (
    IdRange,
    NullObserver,
    ScanObserver,
    ScanReport,
    page_ranges,
    range_filter,
)
from simpro_counter.simpro import SimproClient
from simpro_counter.simpro.answers import Page, Params, Record

__all__ = [
    "INVOICES",
    "SCAN_COLUMNS",
    "IdRange",
    "ScanObserver",
    "ScanReport",
    "range_filter",
    "scan_customers",
    "scan_invoices",
]

INVOICES = "invoices"
# Every column the invoice metrics, the growth history and the invoice filter need.
SCAN_COLUMNS = scan_columns()
# The catch-up also asks for `DateModified`, which proves a build ignored If-Modified-Since.
CATCH_UP_COLUMNS = tuple(dict.fromkeys((*SCAN_COLUMNS, DATE_MODIFIED)))


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
    scan = _Scan(client, observer or NullObserver(), max_rounds, InvoiceFold(invoice_filter))
    report = await scan.run()
    return report, scan.fold


@dataclass(frozen=True)
class _Snapshot:
    """The page of newest invoices (ordered by -ID): Simpro's total and its newest
    invoices from one answer."""

    total: int
    newest: tuple[tuple[int, InvoiceEntry | None], ...]
    """The newest invoices, parsed (ID, entry), highest ID first."""

    @property
    def newest_id(self) -> int:
        """The highest invoice ID at the snapshot; -1 when Simpro held none."""
        return max((invoice_id for invoice_id, _ in self.newest), default=-1)


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
        self.ignored: dict[Ignored, None] = {}  # insertion-ordered set

    async def run(self) -> ScanReport:
        started = time.monotonic()
        requests_before = self.client.stats.requests
        retries_before = self.client.stats.retries
        marks, cursor, snapshot, unconfirmed = await self._read_all_pages()
        if ID_FILTERS in self.ignored:
            total = await self._exact_by_passes(snapshot, cursor, unconfirmed)
        else:
            try:
                total = await self._reconcile(marks, cursor, snapshot)
            except IdFiltersIgnoredError:
                self._noticed(ID_FILTERS)
                total = await self._exact_by_passes(None, cursor, None)
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
            ignored=tuple(self.ignored),
        )

    def _noticed(self, ignored: Ignored) -> None:
        if ignored not in self.ignored:
            self.ignored[ignored] = None
            self.observer.reconciling(note(ignored, "scan"))

    async def _reconcile(self, marks: list[int], cursor: str | None, snapshot: _Snapshot) -> int:
        """Steps 2-4 of the proof (ID filters searched on); Simpro's total at the end.

        Raises :class:`IdFiltersIgnoredError` as soon as an answer proves they are not.
        """
        counted: list[int] = []

        async def count() -> None:
            counted.append(await self.client.count(INVOICES))

        await _together(count(), self._catch_up(cursor))
        total = counted[0]
        newest_at_start = snapshot.newest_id
        created = self.fold.count_above(newest_at_start)
        deleted = snapshot.total + created - total
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
                await _together(*(self._refetch(r) for r in page_ranges(marks)))
                reread_all = False
            else:
                self.observer.reconciling(
                    f"{len(self.fold)} invoices seen, Simpro reports {total}: "
                    "locating the difference"
                )
                await self._locate_and_repair((None, None), total)
            total = await self.client.count(INVOICES)
        return total

    async def _read_all_pages(self) -> tuple[list[int], str | None, _Snapshot, set[int]]:
        """Every page once: the first ID of each page, the cursor, the snapshot, and the
        IDs of page 1 and the snapshot that the pages between did not hold again.

        The snapshot is the page of newest invoices (ordered by -ID): its `Result-Total` and
        first ID are the total and the newest ID at one instant, and its records are needed
        anyway. What lies between page 1 and that page is read as pages of an ID range, so
        changes at either end cannot shift it. (On a build that ignores the range, those
        pages are every invoice, read after the snapshot: the first pass of step 5, and
        the IDs returned are what the range was not.)
        """
        size = self.client.config.page_size
        first, newest = await asyncio.gather(
            self.client.page(INVOICES, 1, columns=SCAN_COLUMNS, params={"orderby": "ID"}),
            self.client.page(INVOICES, 1, columns=SCAN_COLUMNS, params={"orderby": "-ID"}),
        )
        total_at_start = _result_total(newest)
        self.observer.started(max(1, math.ceil(total_at_start / size)), total_at_start)
        marks: list[int] = []
        low = self._take(first, marks, "invoices page 1")
        newest_ids = self._take(newest, marks, "newest invoices")
        snapshot = self._snapshot_of(newest)
        unconfirmed = set(self.fold.ids())
        between = snapshot.total - len(first.records) - len(newest.records)
        if low is not None and newest_ids is not None and between > 0:
            id_range = (low[1] + 1, newest_ids[0] - 1)
            shown = f"{id_range[0]},{id_range[1]}"
            async for page in self.client.pages(
                INVOICES,
                columns=SCAN_COLUMNS,
                params={"orderby": "ID", "ID": f"between({shown})"},
                page_count_hint=math.ceil(between / size),
            ):
                where = f"invoices between({shown}) page {page.number}"
                ids = self._take_ids(page, marks, where)
                unconfirmed.difference_update(ids)
                if any(outside(invoice_id, *id_range) for invoice_id in ids):
                    self._noticed(ID_FILTERS)
        return marks, first.date, snapshot, unconfirmed

    def _snapshot_of(self, newest: Page) -> _Snapshot:
        parsed = tuple(
            parse_invoice(record, self.fold.filter, "newest invoices") for record in newest.records
        )
        return _Snapshot(_result_total(newest), parsed)

    async def _snapshot(self) -> _Snapshot:
        newest = await self.client.page(
            INVOICES, 1, columns=SCAN_COLUMNS, params={"orderby": "-ID"}
        )
        self.pages += 1
        return self._snapshot_of(newest)

    def _apply(self, record: Record, where: str) -> int:
        invoice_id, entry = self.fold.parse(record, where)
        self.fold.put(invoice_id, entry)
        return invoice_id

    def _take_ids(self, page: Page, marks: list[int], where: str) -> list[int]:
        """Apply a page to the fold and mark where it starts; the invoice IDs it held."""
        self.pages += 1
        ids = [self._apply(record, where) for record in page.records]
        self.observer.page_done(len(page.records), self.client.stats.retries)
        if ids:
            marks.append(min(ids))
        return ids

    def _take(self, page: Page, marks: list[int], where: str) -> tuple[int, int] | None:
        """Apply a page to the fold; its lowest and highest invoice IDs (None when empty)."""
        ids = self._take_ids(page, marks, where)
        return (min(ids), max(ids)) if ids else None

    async def _catch_up(self, cursor: str | None, *, known_only: bool = False) -> None:
        """Apply invoices changed since the scan began (e.g. moved to another customer).

        Costs one request when nothing changed. A build that ignores `If-Modified-Since`
        answers with every invoice: all of it is applied (each record is current), and a
        record modified before the cursor says the build ignored it. `known_only`: only
        invoices the fold holds are updated (a pass adds creations from its snapshot).
        """
        if cursor is None:
            return
        since = http_date(cursor)
        async for page in self.client.pages(
            INVOICES, columns=CATCH_UP_COLUMNS, params={"orderby": "ID"}, if_modified_since=cursor
        ):
            for record in page.records:
                if modified_before(record, since):
                    self._noticed(IF_MODIFIED_SINCE)
                invoice_id, entry = self.fold.parse(record, f"invoices changed since {cursor}")
                if not known_only or invoice_id in self.fold:
                    self.fold.put(invoice_id, entry)
                    self.reconciled += 1

    async def _refetch(self, id_range: IdRange) -> None:
        records: list[Record] = []
        params: Params = {"orderby": "ID", **range_filter(id_range)}
        pages = self.client.pages(INVOICES, columns=SCAN_COLUMNS, params=params)
        try:
            async for page in pages:
                self.pages += 1
                check_in_range(page.records, id_range)
                records.extend(page.records)
        finally:
            # Closed now, so no page keeps being fetched after a failed check.
            if isinstance(pages, AsyncGenerator):
                await pages.aclose()
        # Forget every invoice held in the range, then take what Simpro holds there now.
        for invoice_id in self.fold.ids_between(*id_range):
            self.fold.remove(invoice_id)
        for record in records:
            self._apply(record, f"invoices {id_range}")
        self.reconciled += len(records)

    async def _range_count(self, id_range: IdRange) -> int:
        """How many invoices Simpro holds in the range (one request, as `client.count`),
        checking that the one record it sends lies in the range."""
        page = await self.client.page(
            INVOICES, 1, columns=("ID",), params=range_filter(id_range), page_size=1
        )
        check_in_range(page.records, id_range)
        return _result_total(page)

    async def _locate_and_repair(self, id_range: IdRange, known_total: int | None = None) -> None:
        """Halve the range until the ranges whose counts differ are small, then re-read them."""
        if known_total is None:
            known_total = await self._range_count(id_range)
        local = self.fold.ids_between(*id_range)
        if len(local) == known_total:
            return
        if known_total <= self.client.config.page_size or len(local) < 2:
            await self._refetch(id_range)
            return
        middle = local[len(local) // 2]
        await _together(
            self._locate_and_repair((id_range[0], middle - 1)),
            self._locate_and_repair((middle, id_range[1])),
        )

    async def _exact_by_passes(
        self, snapshot: _Snapshot | None, cursor: str | None, unconfirmed: set[int] | None
    ) -> int:
        """Step 5 of the proof, for a build that ignores ID filters; Simpro's total.

        `snapshot` and `unconfirmed` describe a first pass already read into the fold (the
        "between" pages of step 1); with None the fold is read afresh.
        """
        before = snapshot or await self._snapshot()
        for round_ in range(self.max_rounds + 1):
            if round_ or unconfirmed is None:
                self.fold = InvoiceFold(self.fold.filter)
                await self._read_pass(before)
            else:
                for invoice_id in unconfirmed:  # page 1 or the snapshot, not seen by the pass
                    self.fold.remove(invoice_id)
            # Held: the pass's invoices up to the first snapshot's newest (creations come
            # from the second snapshot, which knows which of them still exist).
            for invoice_id in self.fold.ids_between(before.newest_id + 1, None):
                self.fold.remove(invoice_id)
            held = len(self.fold)
            await self._catch_up(cursor, known_only=True)
            after = await self._snapshot()
            created = [entry for entry in after.newest if entry[0] > before.newest_id]
            sees_every_creation = len(after.newest) == after.total or len(created) < len(
                after.newest
            )
            if (
                held == before.total
                and sees_every_creation
                and before.total + len(created) == after.total
            ):
                for invoice_id, entry in after.newest:
                    if invoice_id > before.newest_id or invoice_id in self.fold:
                        self.fold.put(invoice_id, entry)
                return after.total
            self.observer.reconciling(
                f"invoices changed while a pass was read ({before.total} then "
                f"{after.total}; {held} seen): reading every page again"
            )
            before = after
        raise ScanIncompleteError(
            f"this build ignores ID filters and invoices kept being deleted while they were "
            f"counted: {self.max_rounds + 1} passes could not be proven complete; the "
            "previous count is kept"
        )

    async def _read_pass(self, snapshot: _Snapshot) -> None:
        """Every page by number, ordered by ID, into the fold (all requested after `snapshot`)."""
        size = self.client.config.page_size
        async for page in self.client.pages(
            INVOICES,
            columns=SCAN_COLUMNS,
            params={"orderby": "ID"},
            page_count_hint=math.ceil(snapshot.total / size) or None,
        ):
            self._take_ids(page, [], f"invoices page {page.number}")
            self.reconciled += len(page.records)


def _result_total(page: Page) -> int:
    if page.total is None:
        raise SimproDataError(
            "Simpro sent no Result-Total header, so the scan cannot prove it is complete"
        )
    return page.total


async def _together(*steps: Coroutine[Any, Any, None]) -> None:
    """Run the steps concurrently; on the first failure cancel the rest before raising it,
    so that none keeps writing to a fold the scan has moved on from."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
