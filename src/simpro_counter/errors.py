"""One exception tree for the whole service.

Everything the product raises on purpose derives from :class:`SimproCounterError`, so the
edges (the CLI, the web layer) can turn any of them into one precise line for a person
without catching unrelated bugs. Messages are written for the operator who has to act on
them and never contain secrets.
"""

from __future__ import annotations


class SimproCounterError(Exception):
    """Base of every error this package raises deliberately."""


class ConfigError(SimproCounterError):
    """A setting is missing or malformed; the message says which one and what to set."""


class SimproError(SimproCounterError):
    """Talking to the Simpro API failed."""


class SimproAuthError(SimproError):
    """Simpro refused the credentials (401/403); retrying cannot help."""


class SimproRequestError(SimproError):
    """Simpro rejected the request itself (a 4xx other than 401/403/429)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class SimproUnavailableError(SimproError):
    """Simpro kept failing (429, 5xx, timeouts, broken bodies) until the retry budget ran out."""


class SimproDataError(SimproError):
    """Simpro answered, but with data that cannot be counted exactly (e.g. a record without ID)."""


class ScanIncompleteError(SimproError):
    """A scan could not prove that it saw every record, so its result must not be published."""


class IdFiltersIgnoredError(SimproDataError):
    """An answer proved that the build ignores `ID` filters. Raised and caught inside the
    scan, which then reads whole passes instead of ID ranges; it never reaches a caller."""


class RefreshRunningError(SimproCounterError):
    """A refresh of this metric is already running (here or on another replica)."""


class StoreError(SimproCounterError):
    """The store failed in a way falling back cannot hide (e.g. no redis-server to start)."""


# -- the invoice ledger and the growth history read from it (store/ledger/, growth.py) --


class LedgerJournalGapError(StoreError):
    """Events after `journal_from` were trimmed from the journal: the rebuild was not swapped."""


class HistoryUnavailableError(SimproCounterError):
    """No history yet: no full scan has filled the ledger, or Redis never answered."""


# -- webhook deliveries (webhooks/receiver.py, webhooks/queue.py) --


class BadDeliveryError(SimproCounterError):
    """A webhook body is not a delivery this service understands; the message says why."""


class WebhookBacklogFullError(SimproCounterError):
    """`WEBHOOK_BACKLOG_LIMIT` deliveries wait to be applied: a new one is refused, not queued."""

    def __init__(self, waiting: int, limit: int) -> None:
        super().__init__(
            f"The webhook backlog is full: {waiting} accepted deliveries wait to be applied "
            f"(WEBHOOK_BACKLOG_LIMIT is {limit})"
        )
        self.waiting = waiting
        self.limit = limit
