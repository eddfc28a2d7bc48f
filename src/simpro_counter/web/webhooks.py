"""`POST /api/simpro/webhooks`: verify a Simpro delivery and queue it, nothing more.

The answer must be fast, so no Simpro call happens here: an accepted delivery is appended
to the webhook queue (`webhooks/queue.py`) and applied later by the `webhook-workers` group.

Every correctly signed delivery is answered 200 (Simpro's retry and disable policy for
failed deliveries is unpublished, so nothing it cannot fix by retrying gets a non-2xx),
queued or not: events the service does not apply, stale ones and replays
(`webhooks/replay.py`) are acknowledged and dropped here, so they never reach the queue.
Only a body that is no delivery at all gets a 400, and Redis failing a 503 with
`Retry-After`: then nothing was queued or marked, and Simpro's redelivery is applied.
So does a full backlog (`WEBHOOK_BACKLOG_LIMIT` deliveries accepted and not yet applied):
refusing the delivery, which Simpro sends again, is what keeps every accepted one until a
worker has applied it.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request, Response

from simpro_counter.contract import WebhookAccepted, WebhookRefused
from simpro_counter.errors import BadDeliveryError, StoreError, WebhookBacklogFullError
from simpro_counter.web.auth import client_of
from simpro_counter.web.http import RETRY_AFTER_HEADER, json_response, runtime_of
from simpro_counter.webhooks import replay
from simpro_counter.webhooks.queue import enqueue, enqueue_once
from simpro_counter.webhooks.receiver import Delivery, UnusedEvent, parse_delivery
from simpro_counter.webhooks.signature import verify

router = APIRouter()
log = logging.getLogger("simpro_counter")

MAX_BODY_BYTES = 64 * 1024
# Retry-After of a delivery refused because the backlog is full: a worker applies a
# batch of 50 in well under a second when Simpro answers, so this is ample for room.
BACKLOG_RETRY_AFTER_SECONDS = 10


@router.post(
    "/api/simpro/webhooks",
    summary="Receive a signed Simpro webhook delivery and queue it for the ledger",
    responses={
        200: {
            "model": WebhookAccepted,
            "description": "Verified: queued, or acknowledged and dropped (an event the "
            "service does not use, a stale delivery, a replay; `reason` says which)",
        },
        400: {"model": WebhookRefused, "description": "Not a delivery (the error says why)"},
        401: {"model": WebhookRefused, "description": "Missing or invalid signature"},
        413: {"model": WebhookRefused, "description": "Body larger than 64 KiB"},
        503: {
            "model": WebhookRefused,
            "description": "Webhooks disabled (no WEBHOOK_SECRET), Redis unavailable, or "
            "too many deliveries waiting (WEBHOOK_BACKLOG_LIMIT): nothing was queued; "
            "`Retry-After` when a retry can succeed",
            "headers": {"Retry-After": RETRY_AFTER_HEADER},
        },
    },
    # The handler reads the raw body (the signature is over its bytes), so FastAPI cannot
    # see it: declared here. The signature header's name is WEBHOOK_SIGNATURE_HEADER.
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "Simpro's delivery, signed in the `X-Response-Signature` header "
            "(WEBHOOK_SIGNATURE_HEADER)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def receive_webhook(request: Request) -> Response:
    runtime = runtime_of(request)
    settings = runtime.settings
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        return _refuse(
            request,
            503,
            "disabled",
            "Webhooks are disabled: set WEBHOOK_SECRET to the subscription's secret",
        )
    declared = request.headers.get("content-length", "")
    if declared.strip().isdigit() and int(declared) > MAX_BODY_BYTES:
        return _too_large(request)
    body = await _read_body(request)
    if body is None:
        return _too_large(request)
    if not verify(
        body,
        request.headers.get(settings.webhook_signature_header),
        settings.webhook_secret.get_secret_value(),
        settings.webhook_signature_algorithm,
    ):
        return _refuse(request, 401, "bad_signature", "Missing or invalid signature")
    try:
        parsed = parse_delivery(body)
    except BadDeliveryError as exc:
        return _refuse(request, 400, "bad_request", str(exc))
    if isinstance(parsed, UnusedEvent):
        log.debug("Webhook %s acknowledged: not used by this service", parsed.event)
        return _dropped(request, parsed.event, None, "unused")
    return await _queue_unless_replayed(request, parsed)


async def _queue_unless_replayed(request: Request, delivery: Delivery) -> Response:
    """Queue a verified delivery unless it is stale or a replay (`webhooks/replay.py`)."""
    runtime = runtime_of(request)
    settings = runtime.settings
    check = replay.check(delivery, time.time(), settings.webhook_replay_window)
    if check.stale:
        log.warning(
            "Webhook %s %s acknowledged, not applied: triggered %s, longer ago than "
            "WEBHOOK_REPLAY_WINDOW (%g s)",
            delivery.event,
            delivery.record_id,
            delivery.triggered,
            settings.webhook_replay_window,
        )
        return _dropped(request, delivery.event, delivery.record_id, "stale")
    keys = runtime.store.keys  # hash-tagged in a cluster (`wiring.deployment_keys`)
    try:
        limit = settings.webhook_backlog_limit
        if check.identity is None:
            await enqueue(runtime.redis_client, keys, delivery, limit=limit)
        else:
            entry_id = await enqueue_once(
                runtime.redis_client,
                keys,
                delivery,
                identity=check.identity,
                settled=check.settled,
                seconds=check.mark_seconds,
                limit=limit,
            )
            if entry_id is None:
                log.info("Webhook %s %s acknowledged: a replay", delivery.event, delivery.record_id)
                return _dropped(request, delivery.event, delivery.record_id, "replayed")
    except WebhookBacklogFullError as exc:
        return _refuse(
            request,
            503,
            "backlog_full",
            f"{exc}: the delivery was not queued, retry after {BACKLOG_RETRY_AFTER_SECONDS} s",
            headers={"Retry-After": str(BACKLOG_RETRY_AFTER_SECONDS)},
        )
    except StoreError as exc:
        return _refuse(
            request,
            503,
            "redis_unavailable",
            f"Redis is unavailable ({exc}): the delivery was not queued, retry later",
            headers={"Retry-After": "30"},
        )
    log.info("Webhook %s %s queued", delivery.event, delivery.record_id)
    return _queued(request, delivery)


def _queued(request: Request, delivery: Delivery) -> Response:
    runtime_of(request).telemetry.webhook_deliveries.labels("queued").inc()
    return json_response(
        {"accepted": True, "queued": True, "event": delivery.event, "id": delivery.record_id}
    )


def _dropped(request: Request, event: str, record_id: int | None, reason: str) -> Response:
    """200 for a verified delivery that is not queued: `reason` is `unused`, `stale` or
    `replayed`."""
    runtime_of(request).telemetry.webhook_deliveries.labels(reason).inc()
    body: dict[str, object] = {"accepted": True, "queued": False, "event": event}
    if record_id is not None:
        body["id"] = record_id
    body["reason"] = reason
    return json_response(body)


async def _read_body(request: Request) -> bytes | None:
    """The raw body, read chunk by chunk; None once it passes the limit (the rest unread)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(request: Request) -> Response:
    limit = f"Body too large: the limit is {MAX_BODY_BYTES} bytes"
    return _refuse(request, 413, "too_large", limit)


def _refuse(
    request: Request,
    status: int,
    outcome: str,
    error: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """The refusal, counted under `outcome` in `/metrics` and logged (rate-limited)."""
    runtime = runtime_of(request)
    runtime.telemetry.webhook_deliveries.labels(outcome).inc()
    # Anyone can send these: rate-limited, so a flood cannot flood the log as well.
    runtime.warnings.warning(
        log, "webhook", "Webhook refused (%d) from %s: %s", status, client_of(request), error
    )
    return json_response({"accepted": False, "error": error}, status=status, headers=headers)
