"""`POST /api/simpro/webhooks`: verify a Simpro delivery and queue it, nothing more.

The answer must be fast, so no Simpro call happens here: an accepted delivery is appended
to the webhook queue (`webhooks/queue.py`) and applied later by the `webhook-workers` group.
Deliveries are not de-duplicated on arrival (Simpro may redeliver); applying is idempotent.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from simpro_counter.errors import BadDeliveryError, StoreError, UnknownEventError
from simpro_counter.keys import Keys
from simpro_counter.web.http import json_response, runtime_of
from simpro_counter.webhooks.queue import enqueue
from simpro_counter.webhooks.receiver import parse_delivery
from simpro_counter.webhooks.signature import verify

router = APIRouter()
log = logging.getLogger("simpro_counter")

MAX_BODY_BYTES = 64 * 1024


@router.post(
    "/api/simpro/webhooks",
    summary="Receive a signed Simpro webhook delivery and queue it for the ledger",
    responses={
        202: {"description": "Verified and queued"},
        400: {"description": "Not a delivery (the error says why)"},
        401: {"description": "Missing or invalid signature"},
        413: {"description": "Body larger than 64 KiB"},
        422: {"description": "An event this service does not handle"},
        503: {"description": "Webhooks disabled (no WEBHOOK_SECRET), or Redis unavailable"},
    },
)
async def receive_webhook(request: Request) -> Response:
    runtime = runtime_of(request)
    settings = runtime.settings
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        return _refuse(
            request,
            503,
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
        return _refuse(request, 401, "Missing or invalid signature")
    try:
        delivery = parse_delivery(body)
    except UnknownEventError as exc:
        return _refuse(request, 422, str(exc))
    except BadDeliveryError as exc:
        return _refuse(request, 400, str(exc))
    try:
        await enqueue(runtime.redis_client, Keys(settings.key_prefix), delivery)
    except StoreError as exc:
        return _refuse(
            request,
            503,
            f"Redis is unavailable ({exc}): the delivery was not queued, retry later",
            headers={"Retry-After": "30"},
        )
    log.info("Webhook %s %s queued", delivery.event, delivery.record_id)
    return json_response(
        {"accepted": True, "event": delivery.event, "id": delivery.record_id}, status=202
    )


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
    return _refuse(request, 413, f"Body too large: the limit is {MAX_BODY_BYTES} bytes")


def _refuse(
    request: Request, status: int, error: str, headers: dict[str, str] | None = None
) -> Response:
    client = request.client.host if request.client else "unknown"
    log.warning("Webhook refused (%d) from %s: %s", status, client, error)
    return json_response({"accepted": False, "error": error}, status=status, headers=headers)
