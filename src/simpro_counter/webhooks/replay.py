"""Replay protection: which deliveries the receiver may drop as stale or already queued.

A correctly signed body can be sent again by anyone who saw it once, and Simpro may
redeliver it. Its identity is (event, company, record ID, `date_triggered`): a delivery
whose `date_triggered` is older than `WEBHOOK_REPLAY_WINDOW` is stale, and one whose
identity was queued already is a replay. Both are acknowledged and not applied.

One subtlety keeps this exact: `date_triggered` has whole seconds, so two changes to one
invoice within a second arrive as identical bodies. The first copy is fetched *after* it
is queued, so once the second it names is over (with a margin for the clocks of Simpro
and this service, :data:`SETTLE_SECONDS`), its fetch sees every change of that second
and an identical later copy adds nothing. A copy that arrives before then is queued even
if it looks like a replay (one more fetch, applied idempotently), and only a copy queued
after the second settled makes later copies replays. The marks live in Redis
(`webhooks/queue.py`, :func:`~simpro_counter.webhooks.queue.enqueue_once`) only as long as
a copy could still pass the window.

This module is pure: it decides, the queue keeps the marks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from simpro_counter.webhooks.receiver import Delivery

# Seconds after the start of its `date_triggered` second by which every change of that
# second is visible to a fetch: the second itself, plus a margin for clock skew between
# Simpro and this service and for Simpro's own write-to-read delay.
SETTLE_SECONDS = 5.0


@dataclass(frozen=True)
class ReplayCheck:
    """What the receiver does with one delivery."""

    stale: bool
    """`date_triggered` is older than the window: acknowledge, never queue."""
    identity: str | None
    """What identical copies share (the key of their mark); None when `date_triggered` is
    absent, not a date or has no UTC offset: such a delivery cannot be checked and is
    queued, since a lost change is worse than a repeated fetch."""
    settled: bool
    """The second it names is over: a later identical copy adds nothing."""
    mark_seconds: int
    """How long the mark must live: until a copy would be stale."""


def check(delivery: Delivery, now: float, window: float) -> ReplayCheck:
    """How to treat `delivery`, received at `now` (epoch seconds), under `window` seconds."""
    triggered = triggered_at(delivery.triggered)
    if triggered is None:
        return ReplayCheck(stale=False, identity=None, settled=False, mark_seconds=0)
    identity = (
        f"{delivery.event}:{delivery.company_id}:{delivery.record_id}:{math.floor(triggered)}"
    )
    return ReplayCheck(
        stale=now - triggered > window,
        identity=identity,
        settled=now >= math.floor(triggered) + SETTLE_SECONDS,
        mark_seconds=max(1, math.ceil(triggered + window - now)),
    )


def triggered_at(text: str) -> float | None:
    """`date_triggered` as epoch seconds; None when it is absent, unreadable or naive.

    A time without an offset is left unchecked rather than guessed: read in the wrong
    zone it could look hours old, and a real change would be dropped as stale.
    """
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()
