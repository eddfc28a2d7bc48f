"""Webhook subscriptions of the simulated build and the signed delivery of their events.

Every data set change (Dataset.listeners) queues one delivery per Enabled
subscription of the data's company whose Events include it. Deliveries are POSTed
by asyncio tasks, one worker per subscription so each subscription sees its
events in order, with retries after a connection error or a non-2xx answer. A 429 or
503 that carries `Retry-After` (the receiver's full backlog) is sent again after that
long, capped by `retry_after_cap`, up to `retry_after_attempts` times, without using up
the backoff: such a delivery is held back, not failed.
The HTTP side (companies/{id}/setup/webhooks/ and GET /__webhooks) is webhook_api.py.

What a delivery says is webhook_payload.py: a change of an invoice's Stage sends
`invoice.stage.approved` or `.pending`; whether Simpro sends `invoice.updated` with it
is unverified, so `stage_change_sends_updated` chooses.

Which event loop runs them:
- Under uvicorn (running_simulator, serve) the app's lifespan calls start(), and
  deliveries go out in the background on the server's loop at once.
- In-process (Simulator.transport()) nothing runs on its own: queued deliveries go
  out when a test calls `await sim.webhooks.flush()`, on the caller's loop.
`flush()` (async, any loop) and `flush_sync()` (from a thread other than the
server's) both wait until every queued delivery is done, retries included.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import httpx

from simpro_counter.webhooks.events import INVOICE_EVENTS

from .config import ReferenceId
from .dataset import ChangeEvent
from .records import internal_id
from .webhook_payload import event_names, payload_body
from .webhook_subscription import Subscription, SubscriptionFields

DEFAULT_BACKOFF: tuple[float, ...] = (0.2, 0.5, 1.0)  # seconds before each retry
DEFAULT_RETRY_AFTER_CAP = 60.0  # the longest Retry-After waited
DEFAULT_RETRY_AFTER_ATTEMPTS = 20  # Retry-After answers honoured per delivery
DEFAULT_BUILD = "simulator.simprosuite.com"

__all__ = ["Delivery", "Subscription", "SubscriptionFields", "WebhookDispatcher"]


@dataclass(frozen=True)
class Delivery:
    subscription_id: int
    url: str
    secret: str
    event: str
    reference: Mapping[str, int]
    body: bytes
    duplicate: bool = False


@dataclass
class _Attached:
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient


@dataclass
class _Queues:
    pending: dict[int, deque[Delivery]] = field(default_factory=dict)
    workers: dict[int, asyncio.Task[None]] = field(default_factory=dict)


class WebhookDispatcher:
    """The subscriptions of every company and the delivery of their events.

    Knobs (change them at any time): signature_header and signature_algorithm
    (hashlib name; hex digest of the raw body keyed with the subscription Secret),
    backoff (delays before each retry; len(backoff) + 1 attempts at most),
    retry_after_cap and retry_after_attempts (a 429 or 503 with Retry-After is retried
    after min(Retry-After, cap) seconds, at most that many times more), timeout per
    attempt, duplicate_rate (probability a delivery is sent twice, for testing
    idempotent receivers), shuffle (each worker sends whatever is queued for its
    subscription in random order instead of event order), stage_change_sends_updated
    (see event_names) and reference_id (what reference.invoiceID holds: the invoice's
    "ID" or its "InternalID").

    log holds one dict per finished delivery: event, url, subscriptionID,
    reference, attempts, status (last HTTP status or None), error (last exception
    text or None), ok, duplicate, heldBack (Retry-After answers waited out).
    """

    def __init__(
        self,
        *,
        company_id: int,
        seed: int,
        transport: httpx.AsyncBaseTransport | None = None,
        build: str = DEFAULT_BUILD,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.company_id = company_id  # whose data the Dataset holds
        self.build = build
        self.stage_change_sends_updated = False
        self.reference_id: ReferenceId = "ID"
        self._clock = clock  # stamps DateCreated
        self.signature_header = "X-Response-Signature"
        self.signature_algorithm = "sha1"
        self.backoff: tuple[float, ...] = DEFAULT_BACKOFF
        self.retry_after_cap = DEFAULT_RETRY_AFTER_CAP
        self.retry_after_attempts = DEFAULT_RETRY_AFTER_ATTEMPTS
        self.timeout = 5.0
        self.duplicate_rate = 0.0
        self.shuffle = False
        self.log: list[dict[str, object]] = []
        self._transport = transport
        self._lock = threading.RLock()
        self._subscriptions: dict[int, Subscription] = {}
        self._last_id = 0
        self._queues = _Queues()
        self._rng = random.Random(f"simpro-webhooks:{seed}")
        self._attached: _Attached | None = None

    # -- subscriptions -------------------------------------------------------------

    def subscribe(
        self,
        company_id: int,
        *,
        name: str,
        callback_url: str,
        secret: str = "",
        events: tuple[str, ...] = INVOICE_EVENTS,
        status: str = "Enabled",
        description: str = "",
        email: str = "",
    ) -> Subscription:
        with self._lock:
            self._last_id += 1
            sub = Subscription(
                self._last_id,
                company_id,
                name,
                callback_url,
                secret,
                events,
                status,
                description,
                email,
                int(self._clock()),
            )
            self._subscriptions[sub.id] = sub
            return replace(sub)

    def subscriptions(self, company_id: int | None = None) -> list[Subscription]:
        with self._lock:
            return [
                replace(s)
                for s in self._subscriptions.values()
                if company_id is None or s.company_id == company_id
            ]

    def subscription(self, company_id: int, sub_id: int) -> Subscription | None:
        with self._lock:
            sub = self._subscriptions.get(sub_id)
            return replace(sub) if sub is not None and sub.company_id == company_id else None

    def update(
        self, company_id: int, sub_id: int, changes: SubscriptionFields
    ) -> Subscription | None:
        with self._lock:
            sub = self._subscriptions.get(sub_id)
            if sub is None or sub.company_id != company_id:
                return None
            updated = changes.applied_to(sub)
            self._subscriptions[sub_id] = updated
            return replace(updated)

    def unsubscribe(self, company_id: int, sub_id: int) -> bool:
        with self._lock:
            sub = self._subscriptions.get(sub_id)
            if sub is None or sub.company_id != company_id:
                return False
            del self._subscriptions[sub_id]
            return True

    # -- queuing -------------------------------------------------------------------

    def on_change(self, event: ChangeEvent) -> None:
        """Dataset listener: queue a delivery per matching subscription; never blocks."""
        record_id = event.record_id
        if event.resource == "invoice" and self.reference_id == "InternalID":
            record_id = internal_id(record_id)
        reference = {"companyID": self.company_id, f"{event.resource}ID": record_id}
        queued = False
        with self._lock:
            names = event_names(event, stage_change_sends_updated=self.stage_change_sends_updated)
            for name in names:
                queued |= self._queue(name, event, reference)
            attached = self._attached
        if queued and attached is not None:
            # RuntimeError: the loop closed meanwhile; the deliveries stay queued.
            with contextlib.suppress(RuntimeError):
                attached.loop.call_soon_threadsafe(self._start_workers, attached.client)

    def _queue(self, name: str, event: ChangeEvent, reference: Mapping[str, int]) -> bool:
        """Queue event `name` for every subscription that wants it; whether any did."""
        body = payload_body(name, event, reference, build=self.build)
        targets = [
            s
            for s in self._subscriptions.values()
            if s.company_id == self.company_id and s.status == "Enabled" and name in s.events
        ]
        for sub in targets:
            delivery = Delivery(sub.id, sub.callback_url, sub.secret, name, reference, body)
            queue = self._queues.pending.setdefault(sub.id, deque())
            queue.append(delivery)
            if self.duplicate_rate > 0 and self._rng.random() < self.duplicate_rate:
                queue.append(replace(delivery, duplicate=True))
        return bool(targets)

    def pending(self) -> int:
        """Deliveries queued and not yet started."""
        with self._lock:
            return sum(len(q) for q in self._queues.pending.values())

    # -- running -------------------------------------------------------------------

    async def start(self) -> None:
        """Deliver in the background on the running loop (the server's) until stop()."""
        client = self._new_client()
        with self._lock:
            self._attached = _Attached(asyncio.get_running_loop(), client)
        self._start_workers(client)

    async def stop(self) -> None:
        """Cancel deliveries in progress; whatever is still queued stays queued."""
        with self._lock:
            attached, self._attached = self._attached, None
            workers = list(self._queues.workers.values())
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if attached is not None and self._transport is None:
            await attached.client.aclose()

    async def flush(self) -> None:
        """Wait until every queued delivery is finished (retries included).

        Callable from any event loop: while the server runs, the work happens on its
        loop; in-process (no server), it runs here, on the caller's loop.
        """
        with self._lock:
            attached = self._attached
        if attached is not None:
            if attached.loop is asyncio.get_running_loop():
                await self._drain(attached.client)
            else:
                future = asyncio.run_coroutine_threadsafe(
                    self._drain(attached.client), attached.loop
                )
                await asyncio.wrap_future(future)
            return
        client = self._new_client()
        try:
            await self._drain(client)
        finally:
            if self._transport is None:
                await client.aclose()

    def flush_sync(self, timeout: float = 10.0) -> None:
        """flush() for a thread that is not the server's, e.g. a test using running_simulator."""
        with self._lock:
            attached = self._attached
        if attached is None:
            asyncio.run(self.flush())
            return
        asyncio.run_coroutine_threadsafe(self._drain(attached.client), attached.loop).result(
            timeout
        )

    def _new_client(self) -> httpx.AsyncClient:
        # The injected transport belongs to the caller: such a client is never closed.
        return httpx.AsyncClient(transport=self._transport, timeout=self.timeout)

    def _start_workers(self, client: httpx.AsyncClient) -> None:
        """Start a worker for each subscription with queued deliveries and none running."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for sub_id, queue in self._queues.pending.items():
                if queue and sub_id not in self._queues.workers:
                    task = loop.create_task(self._work(sub_id, client))
                    self._queues.workers[sub_id] = task

    async def _drain(self, client: httpx.AsyncClient) -> None:
        while True:
            self._start_workers(client)
            with self._lock:
                workers = list(self._queues.workers.values())
            if not workers:
                return
            await asyncio.gather(*workers, return_exceptions=True)

    async def _work(self, sub_id: int, client: httpx.AsyncClient) -> None:
        try:
            while True:
                with self._lock:
                    queue = self._queues.pending.get(sub_id)
                    if not queue:
                        self._queues.pending.pop(sub_id, None)
                        return
                    batch = list(queue) if self.shuffle else [queue[0]]
                    for _ in batch:
                        queue.popleft()
                    if self.shuffle:
                        self._rng.shuffle(batch)
                for delivery in batch:
                    await self._deliver(client, delivery)
        finally:
            with self._lock:
                self._queues.workers.pop(sub_id, None)

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        signature = hmac.new(
            delivery.secret.encode(), delivery.body, self.signature_algorithm
        ).hexdigest()
        headers = {"Content-Type": "application/json", self.signature_header: signature}
        status: int | None = None
        error: str | None = None
        attempts = 0
        delays = list(self.backoff)
        held_back = 0  # Retry-After answers honoured
        delay = 0.0
        while True:
            if delay > 0:
                await asyncio.sleep(delay)
            attempts += 1
            wait: float | None = None
            try:
                response = await client.post(
                    delivery.url, content=delivery.body, headers=headers, timeout=self.timeout
                )
            except Exception as exc:  # any failure to deliver is logged, then retried
                status, error = None, f"{type(exc).__name__}: {exc}"
            else:
                status, error = response.status_code, None
                if 200 <= status < 300:
                    break
                wait = _retry_after(response)
            if wait is not None and held_back < self.retry_after_attempts:
                held_back += 1
                delay = min(wait, self.retry_after_cap)
            elif delays:
                delay = delays.pop(0)
            else:
                break
        with self._lock:
            self.log.append(
                {
                    "event": delivery.event,
                    "url": delivery.url,
                    "subscriptionID": delivery.subscription_id,
                    "reference": dict(delivery.reference),
                    "attempts": attempts,
                    "status": status,
                    "error": error,
                    "ok": status is not None and 200 <= status < 300,
                    "duplicate": delivery.duplicate,
                    "heldBack": held_back,
                }
            )

    def as_json(self) -> dict[str, object]:
        """What GET /__webhooks shows."""
        with self._lock:
            return {
                "subscriptions": [
                    {"CompanyID": s.company_id, **s.as_json()} for s in self._subscriptions.values()
                ],
                "pending": sum(len(q) for q in self._queues.pending.values()),
                "deliveries": list(self.log),
            }


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds a 429 or 503 asks to wait (`Retry-After` in seconds); None for any other
    answer, or one without a readable `Retry-After`."""
    if response.status_code not in (429, 503):
        return None
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return max(0.0, seconds)
