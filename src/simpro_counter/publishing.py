"""Publishing the invoice ledger's counts over the values a full refresh built on it.

Webhook events and incremental syncs change the ledger; this module moves customers,
invoices and revenue after it. It knows which values may be moved (:func:`built_on_ledger`,
:func:`can_sync`) and how to publish without ever going backwards: the store orders values
of one fence by the ledger version they were read at.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import replace

from simpro_counter.metrics import INVOICE_GROUP, InvoiceFilter, group_members
from simpro_counter.store.base import Store
from simpro_counter.store.ledger import LEDGER_FORMAT, InvoiceLedgerStore
from simpro_counter.store.values import MetricValue

log = logging.getLogger("simpro_counter.publishing")

# Passes of `publish_from_ledger` when another writer publishes in between.
_LEDGER_PUBLISH_ATTEMPTS = 5


class LedgerPublish(enum.Enum):
    """What :func:`publish_from_ledger` did."""

    CAUGHT_UP = "caught up"
    """Every invoice metric is at the ledger's version (or was already)."""
    NOT_BUILT_ON_LEDGER = "not built on the ledger"
    """A value is missing or not from a full scan of this ledger: nothing is published
    over it, since the ledger's counts may be partial."""
    GAVE_UP = "gave up"
    """Other writers published in between on every pass: the values may still be behind
    (the next event or refresh publishes again)."""


def built_on_ledger(value: MetricValue, invoice_filter: InvoiceFilter | None = None) -> bool:
    """Whether the value comes from a ledger a full scan rebuilt in the current format
    under the same invoice filter: only then may ledger changes be published over it."""
    return value.provenance.built_on(LEDGER_FORMAT, (invoice_filter or InvoiceFilter()).describe())


def can_sync(value: MetricValue, invoice_filter: InvoiceFilter | None = None) -> bool:
    """An incremental sync needs a cursor and a value built on the ledger."""
    return bool(value.provenance.cursor) and built_on_ledger(value, invoice_filter)


async def publish_from_ledger(
    store: Store, ledger: InvoiceLedgerStore, invoice_filter: InvoiceFilter
) -> LedgerPublish:
    """Publish the ledger's current customers, invoices and revenue over the values a full
    refresh built on it, wherever they are behind the ledger's version.

    All three come from one MGET of the ledger's counts, so they agree with each other.
    Each keeps the fence (and freshness) of the value it replaces, so a full refresh that
    started earlier still publishes after it; the store orders values of one fence by
    ledger version, so counts read earlier by another writer never overwrite these. Called
    after every webhook event (also one that changed nothing: a previous attempt may have
    stopped half-way) and after a full refresh published (events applied between its
    ledger swap and its publish). Store failures are raised.
    """
    for _ in range(_LEDGER_PUBLISH_ATTEMPTS):
        counts = await ledger.counts()
        values = counts.metric_values()
        behind = False
        # Every member is checked before any moves, so a group is never published half.
        members = group_members(INVOICE_GROUP)
        stored = [await store.read(metric) for metric in members]
        built = [v for v in stored if v is not None and built_on_ledger(v, invoice_filter)]
        if len(built) != len(members):
            return LedgerPublish.NOT_BUILT_ON_LEDGER  # no full scan behind the ledger yet
        for current in built:
            metric = current.metric
            if current.ledger_version >= counts.version:
                continue
            moved = replace(
                current,
                value=values[metric],
                provenance=replace(current.provenance, ledger_version=counts.version),
                report={**current.report, "lastEventAt": time.time()},
            )
            if not await store.publish(moved):
                behind = True  # a newer value arrived meanwhile: read everything again
        if not behind:
            return LedgerPublish.CAUGHT_UP
    log.warning(
        "Values not confirmed at the ledger's version after %d passes (other writers kept "
        "publishing); the next event or refresh publishes again",
        _LEDGER_PUBLISH_ATTEMPTS,
    )
    return LedgerPublish.GAVE_UP
