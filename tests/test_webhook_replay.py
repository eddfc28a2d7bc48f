"""Replay protection: the receiver's verdict (pure), the marks on real Redis, the lookup's
throttled warning."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from simpro_counter.keys import Keys
from simpro_counter.webhooks.lookup import MismatchLog
from simpro_counter.webhooks.queue import enqueue_once
from simpro_counter.webhooks.receiver import Delivery
from simpro_counter.webhooks.replay import SETTLE_SECONDS, check, triggered_at

T = datetime(2026, 1, 31, 9, 5, 27, tzinfo=UTC).timestamp()


def _delivery(triggered: str = "2026-01-31T09:05:27+00:00", **changes: object) -> Delivery:
    values: dict[str, object] = {
        "event": "invoice.updated",
        "resource": "invoice",
        "action": "updated",
        "record_id": 300555,
        "company_id": 0,
        "triggered": triggered,
    }
    values.update(changes)
    return Delivery(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-31T09:05:27+00:00",
        "2026-01-31T09:05:27Z",
        "2026-01-31T19:05:27+10:00",
        " 2026-01-31T09:05:27.000+00:00 ",
    ],
)
def test_triggered_at_reads_zoned_times(text: str) -> None:
    assert triggered_at(text) == T


@pytest.mark.parametrize("text", ["", "yesterday", "2026-01-31T09:05:27", "31/01/2026"])
def test_triggered_at_leaves_absent_naive_or_unreadable_times_unchecked(text: str) -> None:
    assert triggered_at(text) is None
    verdict = check(_delivery(text), T + 10_000, 3600)
    assert (verdict.stale, verdict.identity) == (False, None)


def test_stale_only_past_the_window_and_a_future_date_is_not_stale() -> None:
    assert not check(_delivery(), T + 3600, 3600).stale
    assert check(_delivery(), T + 3600.5, 3600).stale
    assert not check(_delivery(), T - 120, 3600).stale  # Simpro's clock ahead of ours


def test_settled_once_its_second_is_over_with_the_margin() -> None:
    late = _delivery("2026-01-31T09:05:27.900+00:00")  # the same whole second
    assert not check(late, T + SETTLE_SECONDS - 0.01, 3600).settled
    assert check(late, T + SETTLE_SECONDS, 3600).settled
    assert check(late, T, 3600).identity == check(_delivery(), T, 3600).identity


def test_identity_is_event_company_id_and_second() -> None:
    base = check(_delivery(), T, 3600).identity
    assert base == f"invoice.updated:0:300555:{int(T)}"
    others = [
        _delivery(event="invoice.status", action="status"),
        _delivery(company_id=2),
        _delivery(record_id=300556),
        _delivery("2026-01-31T09:05:28+00:00"),
    ]
    assert all(check(other, T, 3600).identity != base for other in others)


def test_the_mark_lives_until_a_copy_would_be_stale() -> None:
    assert check(_delivery(), T + 10, 3600).mark_seconds == 3590
    assert check(_delivery(), T + 3599.5, 3600).mark_seconds == 1
    assert check(_delivery(), T - 100, 3600).mark_seconds == 3700


async def test_enqueue_once_queues_unsettled_copies_and_refuses_after_a_settled_one(
    redis_url: str,
) -> None:
    keys = Keys("test-replay-marks")
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        await redis.delete(keys.webhook_events, keys.webhook_seen("x"))
        delivery = _delivery()

        async def once(settled: bool) -> str | None:
            return await enqueue_once(
                redis, keys, delivery, identity="x", settled=settled, seconds=60
            )

        assert await once(False) is not None  # within its second: queued ...
        assert await once(False) is not None  # ... and an identical copy too
        assert await redis.get(keys.webhook_seen("x")) == "0"
        assert await once(True) is not None  # the first copy queued once settled
        assert await redis.get(keys.webhook_seen("x")) == "1"
        assert await once(True) is None  # a replay
        assert await once(False) is None
        assert await redis.xlen(keys.webhook_events) == 3
        assert 55 < await redis.ttl(keys.webhook_seen("x")) <= 60
        entries: Any = await redis.xrange(keys.webhook_events)
        assert entries[-1][1]["id"] == "300555"
    finally:
        await redis.delete(keys.webhook_events, keys.webhook_seen("x"))
        await redis.aclose()


def test_mismatch_log_warns_once_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    quiet = MismatchLog(interval=3600)
    with caplog.at_level(logging.WARNING, logger="simpro_counter.webhooks"):
        for invoice in range(5):
            quiet.warn("invoice %s not found", invoice)
    assert [r.getMessage() for r in caplog.records] == ["invoice 0 not found"]
    caplog.clear()
    every = MismatchLog(interval=0)
    with caplog.at_level(logging.WARNING, logger="simpro_counter.webhooks"):
        every.warn("invoice %s not found", 1)
        every.warn("invoice %s not found", 2)
    assert [r.getMessage() for r in caplog.records] == [
        "invoice 1 not found",
        "invoice 2 not found",
    ]


def test_mismatch_log_says_how_many_it_kept_quiet_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    log = MismatchLog(interval=600, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="simpro_counter.webhooks"):
        log.warn("invoice %s not found", 1)
        log.warn("invoice %s not found", 2)
        log.warn("invoice %s not found", 3)
        now[0] += 600
        log.warn("invoice %s not found", 4)
    assert [r.getMessage() for r in caplog.records] == [
        "invoice 1 not found",
        "invoice 4 not found (2 more like it since the last warning)",
    ]
