"""What a Simpro build was seen to ignore, how that is proven, and saying so once.

Two behaviours the scan and the sync would like to rely on are unverified on a real build
(docs/guide.md, "Builds that ignore a filter"): searching on `ID` (`ID=between(a,b)`) and
`If-Modified-Since`. Neither is assumed: the scan and the sync stay exact either way, and
what they find out is reported with the refresh and logged once per process.

Both detectors fire only on proof, never on a guess from sizes:

- **ID filters ignored**: an answer to a query with an ID filter held a record whose ID
  lies outside the range asked for (:func:`outside`). A build that searches on `ID`
  never returns one.
- **If-Modified-Since ignored**: an answer to a request sent with the header held a
  record whose `DateModified` is more than a second before the date sent
  (:func:`modified_before`). A build honouring the header returns only records modified
  at or after it (the second covers the header's one-second resolution). A record
  without a readable, zone-qualified `DateModified` proves nothing either way.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal

from simpro_counter.errors import IdFiltersIgnoredError
from simpro_counter.ids import parse_id
from simpro_counter.simpro.answers import Record

Ignored = Literal["ID filters", "If-Modified-Since"]
ID_FILTERS: Ignored = "ID filters"
IF_MODIFIED_SINCE: Ignored = "If-Modified-Since"

# The column that proves If-Modified-Since was ignored; asked for wherever it is sent.
DATE_MODIFIED = "DateModified"
# HTTP dates have one-second resolution: a record modified within a second before the
# date sent may legitimately come back from a build that rounds rather than truncates.
_RESOLUTION = timedelta(seconds=1)

_CONSEQUENCES: dict[tuple[Ignored, str], str] = {
    (ID_FILTERS, "scan"): (
        "this build ignores ID filters: the scan reads whole passes by page number and "
        "proves each against Simpro's total and newest invoice"
    ),
    (IF_MODIFIED_SINCE, "scan"): (
        "this build ignores If-Modified-Since: the scan's catch-up reads every invoice again"
    ),
    (IF_MODIFIED_SINCE, "sync"): (
        "this build ignores If-Modified-Since: an incremental sync reads every invoice "
        "(a full re-read applied through the ledger, as many requests as a scan; "
        "CUSTOMER_COUNT_TTL sets how often one runs)"
    ),
}

_announced: set[str] = set()


def note(ignored: Ignored, where: Literal["scan", "sync"]) -> str:
    """The sentence the report and the log carry for what `where` found ignored."""
    return _CONSEQUENCES.get((ignored, where)) or f"this build ignores {ignored}"


def announce(text: str, logger: logging.Logger) -> bool:
    """Log `text` as a warning the first time this process sees it; whether it did."""
    if text in _announced:
        return False
    _announced.add(text)
    logger.warning("%s", text)
    return True


def forget_announcements() -> None:
    """Make the next :func:`announce` of every text log again (for tests)."""
    _announced.clear()


def outside(invoice_id: int, low: int | None, high: int | None) -> bool:
    """Whether an ID lies outside the inclusive range [low, high] (None: open end)."""
    return (low is not None and invoice_id < low) or (high is not None and invoice_id > high)


def check_in_range(records: list[Record], id_range: tuple[int | None, int | None]) -> None:
    """Raise :class:`IdFiltersIgnoredError` when a record lies outside the range asked:
    the proof that the build ignored the ID filter."""
    for record in records:
        invoice_id = parse_id(record.get("ID"), what="invoice ID")
        if outside(invoice_id, *id_range):
            raise IdFiltersIgnoredError(
                f"asked for invoices with ID in {id_range}, Simpro sent invoice {invoice_id}"
            )


def http_date(value: str | None) -> datetime | None:
    """An HTTP date (`Date`, `If-Modified-Since`) as an aware datetime, or None."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else None


def modified_before(record: Record, since: datetime | None) -> bool:
    """Whether `record` proves its `DateModified` lies more than a second before `since`."""
    if since is None:
        return False
    raw = record.get(DATE_MODIFIED)
    if not isinstance(raw, str):
        return False
    try:
        modified = datetime.fromisoformat(raw.strip())
    except ValueError:
        return False
    if modified.tzinfo is None:  # a local time of an unknown zone proves nothing
        return False
    return modified + _RESOLUTION < since
