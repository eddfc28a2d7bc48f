"""The invoice a delivery names, as Simpro holds it now, and what a 404 proves.

A 404 for `GET invoices/{id}` after `invoice.deleted` is the deletion. After any other
event it proves nothing: Simpro's invoices have an `ID` and an `InternalID`, and which one
a webhook's reference names is unverified, so the record may exist under a path this
service does not know. Then a list query by ID (`GET invoices/?ID=<id>`) is asked; a
record it returns is used only if its own `ID` is the one wanted (a build that ignores the
filter returns other invoices). Found nowhere, the invoice is left as the ledger has it
for the next sync or full scan to settle, never deleted on that evidence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from simpro_counter.errors import SimproDataError
from simpro_counter.ids import parse_id
from simpro_counter.metrics import scan_columns
from simpro_counter.simpro import SimproClient
from simpro_counter.simpro.answers import Record

log = logging.getLogger("simpro_counter.webhooks")

INVOICES = "invoices"
# Two, not one: a second record in the answer shows the build ignored the ID filter.
_LIST_PAGE_SIZE = 2
# The mismatch is logged at most this often (a build that always answers so would
# otherwise log every delivery).
MISMATCH_LOG_SECONDS = 600.0


@dataclass(frozen=True)
class Found:
    """The invoice as Simpro holds it now."""

    record: Record


@dataclass(frozen=True)
class Gone:
    """Deleted: a 404 after `invoice.deleted`."""


@dataclass(frozen=True)
class Unconfirmed:
    """Not found after an event that does not delete: the ledger is left as it is."""

    filter_ignored: bool
    """The list query answered other invoices: the build ignores ID filters."""


Lookup = Found | Gone | Unconfirmed


async def current_invoice(client: SimproClient, invoice_id: int, action: str) -> Lookup:
    """The invoice `invoice_id` after an event with `action`; Simpro's errors propagate."""
    record = await client.record(INVOICES, invoice_id)
    if record is not None:
        return Found(record)
    if action == "deleted":
        return Gone()
    page = await client.page(
        INVOICES,
        1,
        columns=scan_columns(),
        params={"ID": str(invoice_id)},
        page_size=_LIST_PAGE_SIZE,
    )
    for listed in page.records:
        if _id_of(listed) == invoice_id:
            return Found(listed)
    return Unconfirmed(filter_ignored=bool(page.records))


def _id_of(record: Record) -> int | None:
    try:
        return parse_id(record.get("ID"), what="listed invoice ID")
    except SimproDataError:
        return None


class MismatchLog:
    """Logs a warning about records Simpro does not answer as expected at most once per
    `interval`, counting the ones it kept quiet about."""

    def __init__(
        self, interval: float = MISMATCH_LOG_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self._quiet = 0

    def warn(self, message: str, *args: object) -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            self._quiet += 1
            return
        quiet, self._quiet, self._last = self._quiet, 0, now
        more = f" ({quiet} more like it since the last warning)" if quiet else ""
        log.warning(message + "%s", *args, more)
