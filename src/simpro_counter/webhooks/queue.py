"""The webhook queue: accepted deliveries wait in a Redis stream for the worker group.

Both sides of the stream live here. The receiver (`web/webhooks.py`) appends a verified
delivery with :func:`enqueue` and answers at once; the workers (`webhooks/worker.py`) take
entries through a :class:`WebhookQueue` in the consumer group `webhook-workers` and
acknowledge each one once applied.

One entry per delivery, in `Keys.webhook_events`, with string fields `event`, `resource`,
`action`, `id`, `company` and `triggered` (see :func:`entry_fields`). They stay as they
are, so entries queued by an earlier version are still read after an upgrade.

Replay marks (`Keys.webhook_seen`, see `webhooks/replay.py`) are kept here too: a mark is
set in the same Lua script that appends the entry, so a delivery is never marked seen
without being queued (a Redis failure between the two would turn Simpro's redelivery
into a "replay" and lose the change).

This module is the one place that turns a Redis failure of the stream, its consumer
group or the replay marks into :class:`StoreError`; its callers catch nothing from
redis-py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT, FieldT

from simpro_counter.errors import BadDeliveryError, StoreError
from simpro_counter.keys import WEBHOOK_GROUP, WEBHOOK_STREAM_LENGTH, Keys
from simpro_counter.store.circuit import describe
from simpro_counter.webhooks.receiver import Delivery

log = logging.getLogger("simpro_counter.webhooks")


@dataclass(frozen=True)
class QueuedDelivery:
    """A delivery taken from the queue, with the stream entry to acknowledge once applied."""

    entry_id: str
    delivery: Delivery


def entry_fields(delivery: Delivery) -> dict[FieldT, EncodableT]:
    """The stream entry of `delivery`: what :func:`decode_fields` reads back."""
    return {
        "event": delivery.event,
        "resource": delivery.resource,
        "action": delivery.action,
        "id": str(delivery.record_id),
        "company": str(delivery.company_id),
        "triggered": delivery.triggered,
    }


def decode_fields(fields: Mapping[Any, Any]) -> Delivery:
    """The delivery a stream entry holds; :class:`BadDeliveryError` when it holds none.

    Only `id` is required: `company` defaults to 0 (a single-company build) and the
    other fields to empty text, as the worker has always read them.
    """
    text = {_text(key): _text(value) for key, value in fields.items()}
    event = text.get("event", "")
    try:
        record_id = int(text["id"])
        company_id = int(text.get("company", "0"))
    except (KeyError, ValueError) as exc:
        raise BadDeliveryError(f"no delivery in {text!r}: {exc!r}") from None
    return Delivery(
        event=event,
        resource=text.get("resource", ""),
        action=text.get("action", ""),
        record_id=record_id,
        company_id=company_id,
        triggered=text.get("triggered", ""),
    )


async def enqueue(redis: Redis, keys: Keys, delivery: Delivery) -> str:
    """Append `delivery` to the queue; its entry ID. :class:`StoreError` if Redis fails.

    The stream is trimmed to about `WEBHOOK_STREAM_LENGTH` entries, so a queue no worker
    reads cannot grow without bound.
    """
    with _redis_failures():
        entry_id: Any = await redis.xadd(
            keys.webhook_events,
            entry_fields(delivery),
            maxlen=WEBHOOK_STREAM_LENGTH,
            approximate=True,
        )
    return _text(entry_id)


# KEYS: the mark, the stream. ARGV: "1" if this copy arrived settled else "0", the mark's
# seconds, the stream's length, then the entry's fields and values. A mark "1" means a
# settled copy is queued already: this one is a replay (false, answered as nil).
_ENQUEUE_ONCE = """
if redis.call('GET', KEYS[1]) == '1' then
    return false
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
"""


async def enqueue_once(
    redis: Redis, keys: Keys, delivery: Delivery, *, identity: str, settled: bool, seconds: int
) -> str | None:
    """Append `delivery` unless a settled copy of `identity` was queued; its entry ID, or
    None for a replay. :class:`StoreError` if Redis fails (then nothing was marked).

    The mark records whether this copy arrived settled (`webhooks/replay.py`) and lives
    `seconds`.
    """
    fields = [part for pair in entry_fields(delivery).items() for part in pair]
    args: list[EncodableT] = ["1" if settled else "0", seconds, WEBHOOK_STREAM_LENGTH, *fields]
    with _redis_failures():
        script = redis.register_script(_ENQUEUE_ONCE)
        entry_id: Any = await script(
            keys=[keys.webhook_seen(identity), keys.webhook_events], args=args
        )
    return None if entry_id is None else _text(entry_id)


class WebhookQueue:
    """One consumer's view of the queue: take entries, acknowledge the applied ones.

    An entry is pending from the moment it is taken until it is acknowledged. Entries
    another consumer took and left pending for `claim_idle_ms` (it stopped, or could not
    apply them) are claimed before new ones are read, so no delivery is lost with a
    process. Every method raises :class:`StoreError` when Redis fails.
    """

    def __init__(self, redis: Redis, keys: Keys, consumer: str, *, claim_idle_ms: int) -> None:
        self._redis = redis
        self._stream = keys.webhook_events
        self._consumer = consumer
        self._claim_idle_ms = claim_idle_ms

    async def ensure_group(self) -> None:
        """Create the stream and the consumer group unless they exist."""
        with _redis_failures():
            try:
                await self._redis.xgroup_create(self._stream, WEBHOOK_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):  # BUSYGROUP: the group exists already
                    raise

    async def take(self, count: int, block_ms: int) -> list[QueuedDelivery]:
        """Up to `count` deliveries: claimed idle ones first, else new ones.

        Waits up to `block_ms` for a new entry when there is none. An entry that holds
        no delivery (or was trimmed while pending) is logged and acknowledged, so it
        cannot come back forever.
        """
        with _redis_failures():
            claimed: Any = await self._redis.xautoclaim(
                self._stream,
                WEBHOOK_GROUP,
                self._consumer,
                self._claim_idle_ms,
                "0-0",
                count=count,
            )
            entries: list[Any] = list(claimed[1]) if claimed else []
            if not entries:
                answer: Any = await self._redis.xreadgroup(
                    WEBHOOK_GROUP,
                    self._consumer,
                    {self._stream: ">"},
                    count=count,
                    block=block_ms,
                )
                entries = [entry for _, stream_entries in answer or [] for entry in stream_entries]
        taken: list[QueuedDelivery] = []
        for raw_id, fields in entries:
            entry_id = _text(raw_id)
            try:
                taken.append(QueuedDelivery(entry_id, decode_fields(fields or {})))
            except BadDeliveryError as exc:
                log.error("Webhook queue entry %s dropped: %s", entry_id, exc)
                await self.ack(entry_id)
        return taken

    async def ack(self, *entry_ids: str) -> None:
        """Acknowledge applied entries: no consumer takes them again."""
        with _redis_failures():
            await self._redis.xack(self._stream, WEBHOOK_GROUP, *entry_ids)


@contextmanager
def _redis_failures() -> Iterator[None]:
    """Redis failing (refused, unreachable, timed out) as :class:`StoreError`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreError(describe(exc)) from exc


def _text(value: object) -> str:
    # The service's clients decode responses; a client that does not returns bytes.
    return value.decode() if isinstance(value, bytes) else str(value)
