"""The webhook queue: accepted deliveries wait in a Redis stream for the worker group.

Both sides of the stream live here. The receiver (`web/webhooks.py`) appends a verified
delivery with :func:`enqueue` and answers at once; the workers (`webhooks/worker.py`) take
entries through a :class:`WebhookQueue` in the consumer group `webhook-workers` and
acknowledge each one once applied, which also deletes it from the stream: the stream holds
exactly the deliveries accepted and not yet applied (the backlog). It is never trimmed by
length, so no accepted delivery is dropped before a worker applied it; instead, once
`WEBHOOK_BACKLOG_LIMIT` deliveries wait, :func:`enqueue` refuses new ones
(:class:`WebhookBacklogFullError`, answered 503 with `Retry-After`) and Simpro sends them
again later.

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

from simpro_counter.errors import BadDeliveryError, StoreError, WebhookBacklogFullError
from simpro_counter.keys import WEBHOOK_BACKLOG_LIMIT, WEBHOOK_GROUP, Keys
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


async def enqueue(
    redis: Redis, keys: Keys, delivery: Delivery, *, limit: int = WEBHOOK_BACKLOG_LIMIT
) -> str:
    """Append `delivery` to the queue; its entry ID. :class:`WebhookBacklogFullError` when
    `limit` deliveries wait already (nothing appended), :class:`StoreError` if Redis fails.
    """
    entry_id = await _enqueue(redis, keys, delivery, limit=limit, mark=None)
    if entry_id is None:  # only a mark makes a replay
        raise StoreError("the webhook queue answered a replay without a replay mark")
    return entry_id


async def enqueue_once(
    redis: Redis,
    keys: Keys,
    delivery: Delivery,
    *,
    identity: str,
    settled: bool,
    seconds: int,
    limit: int = WEBHOOK_BACKLOG_LIMIT,
) -> str | None:
    """Append `delivery` unless a settled copy of `identity` was queued; its entry ID, or
    None for a replay. :class:`WebhookBacklogFullError` when `limit` deliveries wait
    already, :class:`StoreError` if Redis fails: in both cases nothing was marked.

    The mark records whether this copy arrived settled (`webhooks/replay.py`) and lives
    `seconds`.
    """
    mark = _Mark(keys.webhook_seen(identity), settled, seconds)
    return await _enqueue(redis, keys, delivery, limit=limit, mark=mark)


@dataclass(frozen=True)
class _Mark:
    key: str
    settled: bool
    seconds: int


# KEYS: the stream, then the replay mark if there is one. ARGV: the backlog limit, "1" if
# this copy arrived settled else "0", the mark's seconds, then the entry's fields and
# values. Answers false for a replay (a mark "1": a settled copy is queued already), the
# stream's length when the backlog is full, else the new entry's ID. The stream holds only
# entries not yet applied (`WebhookQueue.ack` deletes the others), so its length is the
# backlog; checking it in the script that appends means parallel deliveries cannot pass
# the limit together. Nothing is trimmed here: an entry leaves the stream once applied.
_ENQUEUE = """
if KEYS[2] and redis.call('GET', KEYS[2]) == '1' then
    return false
end
local waiting = redis.call('XLEN', KEYS[1])
if waiting >= tonumber(ARGV[1]) then
    return waiting
end
if KEYS[2] then
    redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
"""


async def _enqueue(
    redis: Redis, keys: Keys, delivery: Delivery, *, limit: int, mark: _Mark | None
) -> str | None:
    fields = [part for pair in entry_fields(delivery).items() for part in pair]
    script_keys = [keys.webhook_events] if mark is None else [keys.webhook_events, mark.key]
    args: list[EncodableT] = [
        limit,
        "1" if mark is not None and mark.settled else "0",
        mark.seconds if mark is not None else 0,
        *fields,
    ]
    with _redis_failures():
        script = redis.register_script(_ENQUEUE)
        answer: Any = await script(keys=script_keys, args=args)
    if answer is None:
        return None
    if isinstance(answer, int):
        raise WebhookBacklogFullError(answer, limit)
    return _text(answer)


# KEYS: the stream. ARGV: the group, then the entry IDs. Acknowledges and deletes them in
# one step, so an applied entry never lingers (it would count against the backlog) and a
# deleted one was always applied first. An ID acknowledged already is deleted again: a
# no-op.
_ACK = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
return acked
"""

# KEYS: the stream. ARGV: the group. Deletes the entries the group has applied (taken and
# no longer pending) from the head of the stream: those before the oldest pending entry,
# or all it has taken when none is pending. Entries acknowledged without being deleted
# (by an earlier version, which trimmed by length instead) are removed this way. Never an
# entry the group has not taken, nor one still pending. Answers how many were removed.
_PRUNE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
local last = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local fields = {}
    for i = 1, #group, 2 do
        fields[group[i]] = group[i + 1]
    end
    if fields['name'] == ARGV[1] then
        last = fields['last-delivered-id']
    end
end
if last == nil or last == '0-0' then
    return 0
end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
if pending[1] > 0 then
    return redis.call('XTRIM', KEYS[1], 'MINID', pending[2])
end
return redis.call('XTRIM', KEYS[1], 'MINID', last) + redis.call('XDEL', KEYS[1], last)
"""


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
        no delivery (or was deleted while pending) is logged and acknowledged, so it
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
        """Acknowledge applied entries and delete them: no consumer takes them again, and
        they no longer count against the backlog."""
        if not entry_ids:
            return
        with _redis_failures():
            script = self._redis.register_script(_ACK)
            await script(keys=[self._stream], args=[WEBHOOK_GROUP, *entry_ids])

    async def prune(self) -> int:
        """Delete the entries the group applied that are still in the stream (acknowledged
        by an earlier version, which did not delete them); how many."""
        with _redis_failures():
            script = self._redis.register_script(_PRUNE)
            removed: Any = await script(keys=[self._stream], args=[WEBHOOK_GROUP])
        return int(removed)


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
