"""Every Redis key, channel and prefix the service uses, in one place.

The names of the first three keys of a metric are those of the original Next.js version
(`{prefix}:customer_count`, `..._updated`, `..._lock`), so setting `KEY_PREFIX=fyrup`
reads and writes the original deployment's data.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "simpro"


@dataclass(frozen=True)
class MetricKeys:
    """The keys of one metric (e.g. `customers`) under a prefix."""

    value: str
    """The value as a decimal string (kept from the original: an integer for counts)."""
    updated: str
    """When the value was computed, epoch milliseconds (kept from the original)."""
    lock: str
    """The refresh lock: a random token, set NX with a short PX (kept from the original)."""
    meta: str
    """JSON: computed_at, ttl, fence and the refresh report of the stored value."""
    fence: str
    """INCR counter handing each refresh a fencing token."""
    published_fence: str
    """Fencing token of the stored value; an older refresh may not overwrite a newer one."""
    published_ledger_version: str
    """Ledger version of the stored value: among values of one fence (a full refresh and
    the webhook events published on top of it), counts read earlier may not overwrite
    later ones."""
    status: str
    """JSON: last refresh started/finished, last error."""


@dataclass(frozen=True)
class LedgerBuildingKeys:
    """Temporary keys a ledger rebuild fills before swapping them over the live ones."""

    invoice_entries: str
    customer_invoices: str
    customer_days: str
    first_days: str

    def all(self) -> tuple[str, str, str, str]:
        return (self.invoice_entries, self.customer_invoices, self.customer_days, self.first_days)


@dataclass(frozen=True)
class LedgerKeys:
    """The invoice ledger: the exact, incrementally maintained state of the invoice metrics."""

    invoice_entries: str
    """Hash invoiceID -> `customerID|cents|YYYY-MM-DD` for every invoice counted."""
    customer_invoices: str
    """Hash customerID -> number of its invoices (customers with none are absent)."""
    customers: str
    """Number of customers with at least one invoice (decimal string)."""
    invoices: str
    """Number of invoices counted (decimal string)."""
    revenue_cents: str
    """Sum of the counted invoices' ex-tax totals, in cents (decimal string)."""
    version: str
    """INCR on every change (each applied event and each rebuild)."""
    journal: str
    """Capped list of `version:invoice:entry` changes, replayed after a rebuild."""
    customer_days: str
    """Hash customerID -> the days of its dated invoices, `YYYY-MM-DD=n` sorted, joined by
    commas (so its first day is known also after its earliest invoice goes)."""
    first_days: str
    """Hash YYYY-MM-DD -> customers whose first invoice is on that day (the growth history)."""

    def building(self, token: str) -> LedgerBuildingKeys:
        """The temporary keys of the rebuild identified by `token`."""
        return LedgerBuildingKeys(
            invoice_entries=f"{self.invoice_entries}:building:{token}",
            customer_invoices=f"{self.customer_invoices}:building:{token}",
            customer_days=f"{self.customer_days}:building:{token}",
            first_days=f"{self.first_days}:building:{token}",
        )


@dataclass(frozen=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    def metric(self, metric: str) -> MetricKeys:
        # `customers` keeps the original's `customer_count` stem; later metrics follow it.
        stem = f"{self.prefix}:{_STEMS.get(metric, metric + '_value')}"
        return MetricKeys(
            value=stem,
            updated=f"{stem}_updated",
            lock=f"{stem}_lock",
            meta=f"{stem}_meta",
            fence=f"{stem}_fence",
            published_fence=f"{stem}_published_fence",
            published_ledger_version=f"{stem}_published_ledger_version",
            status=f"{stem}_status",
        )

    @property
    def events(self) -> str:
        """Pub/sub channel: a message `<metric>` each time a value is published."""
        return f"{self.prefix}:events"

    @property
    def webhook_events(self) -> str:
        """Stream of accepted webhook deliveries, consumed by the `webhook-workers` group."""
        return f"{self.prefix}:webhook_events"

    def webhook_seen(self, identity: str) -> str:
        """Replay mark of a queued webhook delivery (`webhooks/replay.py`): "1" or "0",
        with an expiry of at most `WEBHOOK_REPLAY_WINDOW`."""
        return f"{self.prefix}:webhook_seen:{identity}"

    @property
    def history(self) -> str:
        """List of the most recent refreshes (JSON), newest first."""
        return f"{self.prefix}:refresh_history"

    @property
    def ledger(self) -> LedgerKeys:
        """The invoice ledger's keys (`store.ledger.InvoiceLedgerStore`)."""
        stem = f"{self.prefix}:ledger"
        return LedgerKeys(
            invoice_entries=f"{stem}:invoice_entries",
            customer_invoices=f"{stem}:customer_invoices",
            customers=f"{stem}:customers",
            invoices=f"{stem}:invoices",
            revenue_cents=f"{stem}:revenue_cents",
            customer_days=f"{stem}:customer_days",
            first_days=f"{stem}:first_days",
            version=f"{stem}:version",
            journal=f"{stem}:journal",
        )


_STEMS = {"customers": "customer_count"}

# Seconds a refresh lock lives without a heartbeat (REFRESH_LOCK_TTL): a killed holder
# frees it this fast. The holder extends it every third of that while its scan runs.
LOCK_TTL_SECONDS = 15.0
# Recent refreshes kept in `Keys.history`.
HISTORY_LENGTH = 20
# Ledger events kept in `Keys.ledger.journal` for replay after a rebuild: enough for the
# events that arrive during a full scan (minutes at most, webhooks arrive far slower).
LEDGER_JOURNAL_LENGTH = 10_000
# A rebuild's temporary keys expire after this long, so a crashed rebuild leaves no garbage.
LEDGER_BUILD_TTL_SECONDS = 3600

# Consumer group of the processes that apply webhook events.
WEBHOOK_GROUP = "webhook-workers"
# Accepted deliveries kept in the stream (approximate trim).
WEBHOOK_STREAM_LENGTH = 100_000
