"""Applies queued webhook deliveries: fetch the record, update the ledger, publish the count.

Deliveries wait in a Redis stream (`Keys.webhook_events`) read by the consumer group
`webhook-workers`: each replica is one consumer, an entry is acknowledged only once
applied, and entries a stopped replica had taken are claimed by another after a minute,
so a delivery survives a process that stops. Applying is idempotent (the ledger ignores
an invoice whose customer did not change), so duplicates, replays and reordering are
harmless: the record is always fetched as it is now.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import replace
from typing import Any

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from simpro_counter.errors import SimproCounterError
from simpro_counter.keys import WEBHOOK_GROUP, Keys
from simpro_counter.refresh import CUSTOMERS
from simpro_counter.scan import customer_id
from simpro_counter.settings import SimproConfig
from simpro_counter.simpro import SimproClient
from simpro_counter.store.base import Store
from simpro_counter.store.ledger import DELETED, InvoiceLedgerStore
from simpro_counter.store.tasks import stop_task

log = logging.getLogger("simpro_counter.webhooks")

_BATCH = 50
# Shorter than the Redis client's socket timeout (0.25 s): a blocking read that outlived it
# would count as a Redis failure. An entry arriving during the block returns at once.
_BLOCK_MS = 150
# A delivery taken by a consumer that stopped is handed to another after this long.
_CLAIM_IDLE_SECONDS = 60.0
# Publishing retries when a full refresh published in between (see `_publish`).
_PUBLISH_ATTEMPTS = 3


class WebhookWorker:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        store: Store,
        ledger: InvoiceLedgerStore,
        simpro: SimproConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        claim_idle: float = _CLAIM_IDLE_SECONDS,
    ) -> None:
        self._redis = redis
        self._claim_idle_ms = int(claim_idle * 1000)
        self._stream = keys.webhook_events
        self._store = store
        self._ledger = ledger
        self._simpro = simpro
        self._transport = transport
        self._consumer = f"{socket.gethostname()}-{id(self):x}-{int(time.time())}"
        self._task: asyncio.Task[None] | None = None
        self.applied = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook worker")

    async def aclose(self) -> None:
        if self._task is not None:
            await stop_task(self._task)

    async def _run(self) -> None:
        async with SimproClient(self._simpro, transport=self._transport) as client:
            while True:
                try:
                    await self._ensure_group()
                    await self._work(client)
                except (RedisError, OSError) as exc:
                    log.warning("Webhook queue unavailable (%s); retrying in 1 s", exc)
                    await asyncio.sleep(1)

    async def _ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self._stream, WEBHOOK_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _work(self, client: SimproClient) -> None:
        while True:
            claimed: Any = await self._redis.xautoclaim(
                self._stream,
                WEBHOOK_GROUP,
                self._consumer,
                self._claim_idle_ms,
                "0-0",
                count=_BATCH,
            )
            entries: list[tuple[str, dict[str, str]]] = list(claimed[1]) if claimed else []
            if not entries:
                answer: Any = await self._redis.xreadgroup(
                    WEBHOOK_GROUP, self._consumer, {self._stream: ">"}, count=_BATCH,
                    block=_BLOCK_MS,
                )  # fmt: skip
                entries = [entry for _, stream_entries in answer or [] for entry in stream_entries]
            for entry_id, fields in entries:
                if await self._apply(client, fields):
                    await self._redis.xack(self._stream, WEBHOOK_GROUP, entry_id)

    async def _apply(self, client: SimproClient, fields: dict[str, str]) -> bool:
        """Apply one delivery; False to leave it pending (retried later)."""
        if fields.get("resource") != "invoice":
            return True  # jobs, quotes and customers do not change the customer count
        if int(fields.get("company", "0")) != self._simpro.company_id:
            return True
        invoice_id = int(fields["id"])
        try:
            record = await client.record("invoices", invoice_id)
        except SimproCounterError as exc:
            log.warning("Webhook %s %s: Simpro failed (%s); will retry", fields["event"],
                        invoice_id, exc)  # fmt: skip
            return False
        change = await self._ledger.apply(
            invoice_id, DELETED if record is None else customer_id(record, invoice_id)
        )
        self.applied += 1
        log.info("Webhook %s %s applied: %s", fields["event"], invoice_id, change.outcome)
        if change.outcome != "unchanged":
            await self._publish()
        return True

    async def _publish(self) -> None:
        """Publish the ledger's count, once a full refresh has rebuilt the ledger.

        The value keeps the fence (and freshness) of the full refresh it builds on, so a
        refresh that started earlier still publishes after it; if a refresh published in
        between, read again and build on that.
        """
        for _ in range(_PUBLISH_ATTEMPTS):
            current = await self._store.read(CUSTOMERS)
            if current is None or "ledgerVersion" not in current.details:
                return  # no full scan behind the ledger yet: its counts are partial
            counts = await self._ledger.counts()
            details = {**current.details, "ledgerVersion": counts.version,
                       "lastEventAt": time.time()}  # fmt: skip
            if await self._store.publish(replace(current, value=counts.customers, details=details)):
                return
