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


def bucket_slot(identifier: int) -> tuple[str, str]:
    """(bucket, field) of an invoice or customer ID in the ledger's hashes of 100.

    Split on the decimal digits, as the Lua scripts split the ID's string: the bucket is
    the ID without its last two digits ("0" for an ID of one or two characters), the
    field those two digits without a leading zero. 123456 -> ("1234", "56"), 1207 ->
    ("12", "7"), 7 -> ("0", "7"); a negative ID keeps its sign in the bucket
    (-1234 -> ("-12", "34"), -5 -> ("0", "-5")), so every integer has its own slot.
    """
    text = str(int(identifier))
    if len(text) <= 2:
        return "0", text
    bucket, field = text[:-2], text[-2:]
    return bucket, field[1:] if field[0] == "0" else field


def slot_id(bucket: str, field: str) -> int:
    """The ID `bucket_slot` put at (bucket, field)."""
    return int(field) if bucket == "0" else int(bucket + field.zfill(2))


@dataclass(frozen=True)
class LedgerBuildingKeys:
    """Temporary keys a ledger rebuild fills before swapping them over the live ones
    (bucket stems as in `LedgerKeys`)."""

    entry_bucket: str
    customer_bucket: str
    customer_long: str
    first_day_numbers: str
    entry_buckets: str
    customer_buckets: str

    def singles(self) -> tuple[str, str, str, str]:
        """The keys that are not bucket stems."""
        return (
            self.customer_long,
            self.first_day_numbers,
            self.entry_buckets,
            self.customer_buckets,
        )


@dataclass(frozen=True)
class RetiredLedgerKeys:
    """The ledger keys of earlier formats, removed by the first rebuild in format 3."""

    invoice_customer: str
    """Format 1: hash invoiceID -> customerID."""
    invoice_entries: str
    """Format 2: hash invoiceID -> `customerID|cents|YYYY-MM-DD`."""
    customer_invoices: str
    """Format 2: hash customerID -> number of its invoices."""
    customer_days: str
    """Format 2: hash customerID -> `YYYY-MM-DD=n,...`."""
    first_days: str
    """Format 2: hash YYYY-MM-DD -> customers whose first invoice is on that day."""

    def all(self) -> tuple[str, ...]:
        return (
            self.invoice_customer,
            self.invoice_entries,
            self.customer_invoices,
            self.customer_days,
            self.first_days,
        )


@dataclass(frozen=True)
class LedgerKeys:
    """The invoice ledger: the exact, incrementally maintained state of the invoice metrics.

    Format 3 (`store.ledger.encoding`): invoices and customers live in small hashes of
    100 fields (`<stem>:<bucket>`, `bucket_slot`), which Redis keeps in its compact
    ziplist/listpack encoding; the stems below are not keys themselves.
    """

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
    entry_bucket: str
    """Stem of the invoice hashes: `<stem>:<bucket>`, field (`bucket_slot` of the invoice
    ID) -> `customerID|cents|day number`."""
    customer_bucket: str
    """Stem of the customer hashes, bucketed the same way -> `n|days`: its number of
    invoices and the day numbers of its dated ones."""
    customer_long: str
    """Hash customerID -> `n|days` for the few customers whose days do not fit a bucket."""
    first_day_numbers: str
    """Hash day number -> customers whose first invoice is on that day (growth history)."""
    entry_buckets: str
    """Set of the invoice bucket numbers written (so a rebuild can remove them all)."""
    customer_buckets: str
    """Set of the customer bucket numbers written."""
    format: str
    """The format the last rebuild wrote (absent before the first rebuild in format 3)."""

    def entry_bucket_of(self, invoice_id: int) -> str:
        """The key of the hash that holds `invoice_id`'s entry."""
        return f"{self.entry_bucket}:{bucket_slot(invoice_id)[0]}"

    @property
    def retired(self) -> RetiredLedgerKeys:
        """The keys of formats 1 and 2 (same stem), removed by a rebuild."""
        stem = self.customers.rsplit(":", 1)[0]
        return RetiredLedgerKeys(
            invoice_customer=f"{stem}:invoice_customer",
            invoice_entries=f"{stem}:invoice_entries",
            customer_invoices=f"{stem}:customer_invoices",
            customer_days=f"{stem}:customer_days",
            first_days=f"{stem}:first_days",
        )

    def building(self, token: str) -> LedgerBuildingKeys:
        """The temporary keys of the rebuild identified by `token`."""
        return LedgerBuildingKeys(
            entry_bucket=f"{self.entry_bucket}:building:{token}",
            customer_bucket=f"{self.customer_bucket}:building:{token}",
            customer_long=f"{self.customer_long}:building:{token}",
            first_day_numbers=f"{self.first_day_numbers}:building:{token}",
            entry_buckets=f"{self.entry_buckets}:building:{token}",
            customer_buckets=f"{self.customer_buckets}:building:{token}",
        )


def deployment_prefix(prefix: str, *, cluster: bool) -> str:
    """The prefix every key starts with: `prefix` itself, or in a Redis Cluster `{prefix}`.

    The braces are a hash tag: Redis Cluster then hashes only `prefix`, so all the keys of
    a deployment share one slot, and a Lua script or MULTI touching several of them (or
    deriving bucket keys from a declared stem, as the ledger's scripts do) never meets
    CROSSSLOT. Outside a cluster the names stay exactly those of the original.
    """
    if not cluster:
        return prefix
    return prefix if prefix.startswith("{") and "}" in prefix else f"{{{prefix}}}"


@dataclass(frozen=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    @classmethod
    def of(cls, prefix: str, *, cluster: bool = False) -> Keys:
        """The keys of a deployment (`deployment_prefix`)."""
        return cls(deployment_prefix(prefix, cluster=cluster))

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
            customers=f"{stem}:customers",
            invoices=f"{stem}:invoices",
            revenue_cents=f"{stem}:revenue_cents",
            version=f"{stem}:version",
            journal=f"{stem}:journal",
            entry_bucket=f"{stem}:entry_bucket",
            customer_bucket=f"{stem}:customer_bucket",
            customer_long=f"{stem}:customer_long",
            first_day_numbers=f"{stem}:first_day_numbers",
            entry_buckets=f"{stem}:entry_buckets",
            customer_buckets=f"{stem}:customer_buckets",
            format=f"{stem}:format",
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
# Default WEBHOOK_BACKLOG_LIMIT: deliveries accepted and not yet applied, the most the
# stream holds (applied entries are deleted, so this is its length). A full backlog
# refuses new deliveries with a 503 rather than trimming ones no worker has applied.
WEBHOOK_BACKLOG_LIMIT = 100_000
