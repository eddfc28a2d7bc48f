"""Webhook subscriptions (companies/{id}/setup/webhooks/) and their signed deliveries.

Every data set change (Dataset.listeners) queues one delivery per Enabled
subscription of the data's company whose Events include it. Deliveries are POSTed
by asyncio tasks, one worker per subscription so each subscription sees its
events in order, with retries after a connection error or a non-2xx answer.

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
import json
import random
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .config import callback_url_error
from .dataset import ChangeEvent
from .listing import list_page
from .query import QueryError, parse_columns, parse_list_query
from .records import pick, rfc3339
from .table import Row, Table

_RESOURCES = ("invoice", "job", "quote", "company.customer", "individual.customer")
WEBHOOK_EVENTS: tuple[str, ...] = (
    *(f"{r}.{a}" for r in _RESOURCES for a in ("created", "updated", "deleted")),
    "invoice.status",
)
INVOICE_EVENTS: tuple[str, ...] = (
    "invoice.created",
    "invoice.updated",
    "invoice.deleted",
    "invoice.status",
)
# What the demo subscription asks for: everything that moves a counter.
COUNTED_EVENTS: tuple[str, ...] = (
    *INVOICE_EVENTS,
    "job.created",
    "job.deleted",
    "quote.created",
    "quote.deleted",
)
WEBHOOK_FIELDS = frozenset(
    {"ID", "Name", "CallbackURL", "Secret", "Events", "Status", "Description"}
)
_SUMMARY_FIELDS = ("ID", "Name", "CallbackURL", "Events", "Status")
_STATUSES = ("Enabled", "Disabled")
DEFAULT_BACKOFF: tuple[float, ...] = (0.2, 0.5, 1.0)  # seconds before each retry
DEFAULT_BUILD = "simulator.simprosuite.com"
WEBHOOKS_PATH = "/api/v1.0/companies/{company}/setup/webhooks{rest:path}"


@dataclass
class Subscription:
    id: int
    company_id: int
    name: str
    callback_url: str
    secret: str = ""
    events: tuple[str, ...] = INVOICE_EVENTS
    status: str = "Enabled"
    description: str = ""

    def as_json(self) -> dict[str, object]:
        return {
            "ID": self.id,
            "Name": self.name,
            "CallbackURL": self.callback_url,
            "Secret": self.secret,
            "Events": list(self.events),
            "Status": self.status,
            "Description": self.description,
        }


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
    backoff (delays before each retry; len(backoff) + 1 attempts at most), timeout
    per attempt, duplicate_rate (probability a delivery is sent twice, for testing
    idempotent receivers) and shuffle (each worker sends whatever is queued for its
    subscription in random order instead of event order).

    log holds one dict per finished delivery: event, url, subscriptionID,
    reference, attempts, status (last HTTP status or None), error (last exception
    text or None), ok, duplicate.
    """

    def __init__(
        self,
        *,
        company_id: int,
        seed: int,
        transport: httpx.AsyncBaseTransport | None = None,
        build: str = DEFAULT_BUILD,
    ) -> None:
        self.company_id = company_id  # whose data the Dataset holds
        self.build = build
        self.signature_header = "X-Response-Signature"
        self.signature_algorithm = "sha1"
        self.backoff: tuple[float, ...] = DEFAULT_BACKOFF
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
    ) -> Subscription:
        with self._lock:
            self._last_id += 1
            sub = Subscription(
                self._last_id, company_id, name, callback_url, secret, events, status, description
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

    def update(self, company_id: int, sub_id: int, **changes: object) -> Subscription | None:
        with self._lock:
            sub = self._subscriptions.get(sub_id)
            if sub is None or sub.company_id != company_id:
                return None
            updated = replace(sub, **changes)  # type: ignore[arg-type]
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
        name = event.name
        reference = {"companyID": self.company_id, f"{event.resource}ID": event.record_id}
        payload = {
            "ID": name,
            "build": self.build,
            "action": event.action,
            "reference": reference,
            "date_triggered": rfc3339(event.timestamp),
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        with self._lock:
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
            attached = self._attached
        if targets and attached is not None:
            # RuntimeError: the loop closed meanwhile; the deliveries stay queued.
            with contextlib.suppress(RuntimeError):
                attached.loop.call_soon_threadsafe(self._start_workers, attached.client)

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
        for delay in (0.0, *self.backoff):
            if delay > 0:
                await asyncio.sleep(delay)
            attempts += 1
            try:
                response = await client.post(
                    delivery.url, content=delivery.body, headers=headers, timeout=self.timeout
                )
            except Exception as exc:  # any failure to deliver is logged, then retried
                status, error = None, f"{type(exc).__name__}: {exc}"
                continue
            status, error = response.status_code, None
            if 200 <= status < 300:
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


# -- the HTTP side -----------------------------------------------------------------


def _error(status: int, message: str, path: str | None = None) -> JSONResponse:
    item = {"message": message} if path is None else {"path": path, "message": message}
    return JSONResponse({"errors": [item]}, status_code=status)


def _errors(items: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse({"errors": items}, status_code=422)


def _validate(
    body: Mapping[str, object], *, partial: bool
) -> tuple[dict[str, object], list[dict[str, str]]]:
    """Subscription fields from a POST/PATCH body, as Subscription keyword arguments."""
    errors: list[dict[str, str]] = []
    fields: dict[str, object] = {}

    def bad(path: str, message: str) -> None:
        errors.append({"path": path, "message": message})

    for key in body:
        if key == "ID":
            bad(key, "ID is read-only")
        elif key not in WEBHOOK_FIELDS:
            bad(key, f"unknown field {key}")
    if not partial:
        for key in ("Name", "CallbackURL", "Events"):
            if key not in body:
                bad(key, f"{key} is required")
    for key, attr in (("Name", "name"), ("Secret", "secret"), ("Description", "description")):
        if key in body:
            value = body[key]
            if not isinstance(value, str) or (key == "Name" and not value.strip()):
                bad(key, f"{key} must be a{' non-empty' if key == 'Name' else ''} string")
            else:
                fields[attr] = value
    if "CallbackURL" in body:
        url = body["CallbackURL"]
        problem = "must be a string" if not isinstance(url, str) else callback_url_error(url)
        if problem:
            bad("CallbackURL", f"CallbackURL {problem}")
        else:
            fields["callback_url"] = url
    if "Events" in body:
        events = body["Events"]
        if not isinstance(events, list) or not events:
            bad("Events", "Events must be a non-empty list of event names")
        else:
            unknown = [e for e in events if not isinstance(e, str) or e not in WEBHOOK_EVENTS]
            if unknown:
                bad("Events", f"unknown events {unknown}; known: {list(WEBHOOK_EVENTS)}")
            else:
                fields["events"] = tuple(dict.fromkeys(events))
    if "Status" in body:
        status = body["Status"]
        if status not in _STATUSES:
            bad("Status", "Status must be Enabled or Disabled")
        else:
            fields["status"] = status
    return fields, errors


class WebhookApi:
    """companies/{id}/setup/webhooks/[{id}]: GET, POST, PATCH, DELETE."""

    def __init__(self, dispatcher: WebhookDispatcher, company_ids: tuple[int, ...]) -> None:
        self._dispatcher = dispatcher
        self._company_ids = company_ids

    async def handle(self, request: Request) -> Response:
        raw_company = str(request.path_params["company"])
        rest = str(request.path_params["rest"])
        company = int(raw_company) if raw_company.isdigit() else -1
        if company not in self._company_ids:
            return _error(404, f"Company {raw_company} not found")
        if rest and not rest.startswith("/"):
            return _error(404, "Not found")
        segments = [s for s in rest.split("/") if s]
        method = request.method
        try:
            if not segments:
                if method == "GET":
                    return self._list(request, company)
                if method == "POST":
                    return await self._create(request, company)
            elif len(segments) == 1:
                sub_id = int(segments[0]) if segments[0].isdigit() else -1
                if method == "GET":
                    return self._detail(request, company, sub_id)
                if method == "PATCH":
                    return await self._update(request, company, sub_id)
                if method == "DELETE":
                    if not self._dispatcher.unsubscribe(company, sub_id):
                        return _error(404, f"Webhook {segments[0]} not found")
                    return Response(status_code=204)
            else:
                return _error(404, "Not found")
        except QueryError as exc:
            return JSONResponse(exc.as_json(), status_code=422)
        return _error(405, "Method Not Allowed")

    def _list(self, request: Request, company: int) -> Response:
        query = parse_list_query(request.query_params.multi_items(), WEBHOOK_FIELDS)
        table = Table(_row(s) for s in self._dispatcher.subscriptions(company))
        page = list_page(table, query)
        headers = {
            "Result-Total": str(page.total),
            "Result-Pages": str(page.pages),
            "Result-Count": str(page.count),
        }
        return JSONResponse(page.items, headers=headers)

    def _detail(self, request: Request, company: int, sub_id: int) -> Response:
        columns = parse_columns(request.query_params.get("columns"), WEBHOOK_FIELDS)
        sub = self._dispatcher.subscription(company, sub_id)
        if sub is None:
            return _error(404, f"Webhook {sub_id} not found")
        doc = sub.as_json()
        return JSONResponse(doc if columns is None else pick(doc, columns))

    async def _create(self, request: Request, company: int) -> Response:
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        fields, errors = _validate(body, partial=False)
        if errors:
            return _errors(errors)
        sub = self._dispatcher.subscribe(company, **fields)  # type: ignore[arg-type]
        return JSONResponse(sub.as_json(), status_code=201)

    async def _update(self, request: Request, company: int, sub_id: int) -> Response:
        if self._dispatcher.subscription(company, sub_id) is None:
            return _error(404, f"Webhook {sub_id} not found")
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        fields, errors = _validate(body, partial=True)
        if errors:
            return _errors(errors)
        sub = self._dispatcher.update(company, sub_id, **fields)
        if sub is None:  # deleted meanwhile
            return _error(404, f"Webhook {sub_id} not found")
        return JSONResponse(sub.as_json())


async def _json_body(request: Request) -> dict[str, object] | Response:
    try:
        data = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _errors([{"path": "", "message": f"invalid JSON: {exc}"}])
    if not isinstance(data, dict):
        return _errors([{"path": "", "message": "expected a JSON object"}])
    return data


def _row(sub: Subscription) -> Row:
    doc = sub.as_json()
    return Row(sub.id, 0, pick(doc, _SUMMARY_FIELDS), doc)


def webhook_routes(dispatcher: WebhookDispatcher, company_ids: tuple[int, ...]) -> list[Route]:
    """The Simpro subscription API (must precede the generic /api/v1.0/ GET route)
    and the unauthenticated GET /__webhooks view of subscriptions and deliveries."""
    api = WebhookApi(dispatcher, company_ids)

    async def show(request: Request) -> Response:
        return JSONResponse(dispatcher.as_json())

    return [
        Route(WEBHOOKS_PATH, api.handle, methods=["GET", "POST", "PATCH", "DELETE"]),
        Route("/__webhooks", show, methods=["GET"]),
    ]
