"""Applies queued webhook deliveries: fetch the record, update the ledger, publish the values.

Deliveries wait in the webhook queue (`webhooks/queue.py`, a Redis stream read by the
consumer group `webhook-workers`): each replica is one consumer, an entry is acknowledged
only once applied, and entries a stopped replica had taken are claimed by another after a
minute, so a delivery survives a process that stops. Applying is idempotent (the ledger ignores
an invoice whose entry did not change), so duplicates, replays and reordering are
harmless: the record is always fetched as it is now.

Invoice events (created, updated, deleted, status and the stage events) move customers,
invoices and revenue through the ledger; `webhooks/lookup.py` fetches the invoice and
decides what a 404 proves (a deletion only after `invoice.deleted`). Job and quote
events recount jobs or quotes from `Result-Total` (one request covers every event that
arrived before it, since the count is all there is to know), beside the loop, so a slow
recount never holds up invoice events.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Protocol

import httpx
from redis.asyncio import Redis

from simpro_counter.errors import (
    RefreshRunningError,
    SimproCounterError,
    SimproDataError,
    StoreError,
)
from simpro_counter.keys import Keys
from simpro_counter.metrics import METRICS, InvoiceFilter
from simpro_counter.metrics.invoices import InvoiceEntry, parse_invoice
from simpro_counter.publishing import publish_from_ledger
from simpro_counter.simpro import SimproClient, SimproConfig
from simpro_counter.store.base import Store
from simpro_counter.store.ledger import DELETED, InvoiceLedgerStore
from simpro_counter.store.tasks import stop_task
from simpro_counter.store.values import MetricValue
from simpro_counter.webhooks.lookup import Found, MismatchLog, Unconfirmed, current_invoice
from simpro_counter.webhooks.queue import WebhookQueue
from simpro_counter.webhooks.receiver import Delivery

log = logging.getLogger("simpro_counter.webhooks")

_BATCH = 50
# How long one read waits for a delivery (an entry arriving meanwhile returns at once).
# It must stay well under the socket timeout of the queue's client (`QUEUE_TIMEOUT`):
# a blocking read that outlived it would count as a Redis failure.
_BLOCK_MS = 1000
# Socket timeout of the client the worker reads the queue with (its own: the store's
# client has a 0.25 s timeout, which a blocked read plus a busy event loop could exceed).
QUEUE_TIMEOUT = 5.0
# How often the loop deletes applied entries an earlier version left in the stream
# (`WebhookQueue.prune`): they would count against WEBHOOK_BACKLOG_LIMIT.
_PRUNE_SECONDS = 30.0
# A delivery taken by a consumer that stopped is handed to another after this long.
_CLAIM_IDLE_SECONDS = 60.0
# A recount waits this long in all for a refresh of the same metric to finish (its
# request may have been answered before the event), then leaves the entries pending.
_RECOUNT_WAIT_SECONDS = 10.0
_RECOUNT_POLL_SECONDS = 0.2
# Webhook resource -> the metric its events change, for metrics read from Result-Total.
_RECOUNTED = {m.resource.removesuffix("s"): m.name for m in METRICS.values() if m.uses_result_total}


class Recounter(Protocol):
    """What the worker needs of a refresher (`refresh.Refresher` is one): the invoice
    filter deliveries are parsed under, and a recount of jobs or quotes. A protocol, so
    webhooks/ does not depend on refresh/."""

    @property
    def invoice_filter(self) -> InvoiceFilter: ...

    async def refresh(self, metric: str, *, in_history: bool = True) -> MetricValue: ...


class WebhookWorker:
    """One replica's consumer of the webhook queue, running as a task from :meth:`start`.

    Redis failing (the queue, the ledger or the store: all :class:`StoreError`) pauses
    the loop for a second; entries taken and not acknowledged are claimed again once they
    have been idle for `claim_idle`.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        store: Store,
        ledger: InvoiceLedgerStore,
        simpro: SimproConfig,
        refresher: Recounter,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        claim_idle: float = _CLAIM_IDLE_SECONDS,
    ) -> None:
        # Unique per worker process too: `serve --workers N` runs N consumers on one host.
        consumer = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}-{int(time.time())}"
        self._queue = WebhookQueue(redis, keys, consumer, claim_idle_ms=int(claim_idle * 1000))
        self._store = store
        self._ledger = ledger
        self._simpro = simpro
        self._refresher = refresher
        self._transport = transport
        self._task: asyncio.Task[None] | None = None
        # Recounts run beside the loop, one per metric at a time, so a slow one (a running
        # refresh to wait for, a rate-limited Simpro) never holds up invoice deliveries.
        # Entries of deliveries that arrive meanwhile wait for the next recount: its count
        # is read after them.
        self._recount_waiting: dict[str, list[str]] = {}
        self._recounts: dict[str, asyncio.Task[None]] = {}
        self.applied = 0
        self._pruned_at = 0.0
        self._mismatches = MismatchLog()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook worker")

    async def aclose(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
        for task in self._recounts.values():
            await stop_task(task)

    async def _run(self) -> None:
        async with SimproClient(self._simpro, transport=self._transport) as client:
            while True:
                try:
                    await self._queue.ensure_group()
                    await self._prune()
                    await self._work(client)
                except StoreError as exc:
                    log.warning("Webhook queue unavailable (%s); retrying in 1 s", exc)
                    await asyncio.sleep(1)

    async def _prune(self) -> None:
        removed = await self._queue.prune()
        if removed:
            log.info("Webhook queue: %d applied entries removed from the stream", removed)
        self._pruned_at = time.monotonic()

    async def _work(self, client: SimproClient) -> None:
        while True:
            if time.monotonic() - self._pruned_at >= _PRUNE_SECONDS:
                await self._prune()
            recounts: dict[str, list[str]] = {}
            for queued in await self._queue.take(_BATCH, _BLOCK_MS):
                delivery = queued.delivery
                metric = _RECOUNTED.get(delivery.resource)
                if metric is not None and self._ours(delivery):
                    recounts.setdefault(metric, []).append(queued.entry_id)
                elif await self._apply(client, delivery):
                    await self._queue.ack(queued.entry_id)
            for metric, entry_ids in recounts.items():
                self._queue_recount(metric, entry_ids)

    def _queue_recount(self, metric: str, entry_ids: list[str]) -> None:
        self._recount_waiting.setdefault(metric, []).extend(entry_ids)
        running = self._recounts.get(metric)
        if running is None or running.done():
            self._recounts[metric] = asyncio.create_task(
                self._recount_all(metric), name=f"webhook recount of {metric}"
            )

    async def _recount_all(self, metric: str) -> None:
        """Recount until no delivery of `metric` waits; acknowledge what each one covered.

        A recount that fails leaves its deliveries pending: they are claimed again after
        `claim_idle` and recounted then.
        """
        while entry_ids := self._recount_waiting.pop(metric, []):
            try:
                if await self._recount(metric):
                    await self._queue.ack(*entry_ids)
            except StoreError as exc:
                log.warning("Webhook recount of %s: Redis failed (%s); will retry", metric, exc)

    def _ours(self, delivery: Delivery) -> bool:
        return delivery.company_id == self._simpro.company_id

    async def _recount(self, metric: str) -> bool:
        """Count `metric` again; False to leave its deliveries pending (retried later)."""
        deadline = time.monotonic() + _RECOUNT_WAIT_SECONDS
        while True:
            try:
                await self._refresher.refresh(metric, in_history=False)
                self.applied += 1
                return True
            except RefreshRunningError:
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(_RECOUNT_POLL_SECONDS)
            except SimproCounterError as exc:
                log.warning("Webhook for %s: Simpro failed (%s); will retry", metric, exc)
                return False

    async def _apply(self, client: SimproClient, delivery: Delivery) -> bool:
        """Apply one delivery; False to leave it pending (retried later)."""
        if delivery.resource != "invoice":
            # Customer events change no metric (customers count by invoice); the receiver
            # no longer queues them, entries queued by an earlier version are dropped here.
            return True
        if not self._ours(delivery):
            return True
        event, invoice_id = delivery.event, delivery.record_id
        try:
            found = await current_invoice(client, invoice_id, delivery.action)
        except SimproCounterError as exc:
            log.warning("Webhook %s %s: Simpro failed (%s); will retry", event, invoice_id, exc)
            return False
        if isinstance(found, Unconfirmed):
            self._mismatches.warn(
                "Webhook %s %s: Simpro answers 404 for the invoice and %s, so it is not "
                "deleted on that evidence (the reference may name its InternalID); the next "
                "sync or full scan settles it",
                event,
                invoice_id,
                "the build ignores the ID filter of a list query"
                if found.filter_ignored
                else "a list query by ID does not find it either",
            )
            return True
        invoice_filter = self._refresher.invoice_filter
        entry: InvoiceEntry | None = None  # None: deleted, or left out by the invoice filter
        if isinstance(found, Found):
            try:
                record_id, entry = parse_invoice(found.record, invoice_filter, "webhook invoice")
            except SimproDataError as exc:
                # Retrying cannot fix Simpro's data: the ledger keeps what it had, and the
                # next full reconciliation reads the invoice again.
                log.error("Webhook %s %s not applied: %s", event, invoice_id, exc)
                return True
            if record_id != invoice_id:
                # The ledger is keyed by the invoice's own ID, as every scan reads it.
                self._mismatches.warn(
                    "Webhook %s %s: Simpro answered invoice %s; applied under %s",
                    event,
                    invoice_id,
                    record_id,
                    record_id,
                )
                invoice_id = record_id
        change = await self._ledger.apply(invoice_id, DELETED if entry is None else entry)
        self.applied += 1
        log.info("Webhook %s %s applied: %s", event, invoice_id, change.outcome)
        # Also after "unchanged": a previous attempt at this delivery may have applied it
        # and stopped before publishing all three values.
        await publish_from_ledger(self._store, self._ledger, invoice_filter)
        return True
