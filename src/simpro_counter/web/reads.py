"""The hot read path: `GET /api/simpro/{metric}` answered from the near-cache.

Built to cost a few microseconds: no Redis round trip (the store's near-cache), the JSON
body cached per metric and (value, age second, source), headers pre-encoded. Both the raw
ASGI fast path and the documented FastAPI route answer through it.

Count metrics answer `count`; money (`revenue`) answers `total` as a decimal string and
its `currency`, so no client ever sees a binary float of an amount.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from simpro_counter.metrics import METRICS, format_value
from simpro_counter.refresh import Refresher
from simpro_counter.store import MetricValue, ResilientStore
from simpro_counter.telemetry import Telemetry

log = logging.getLogger("simpro_counter")

# Clients (the widget, CDNs) may reuse an answer this long, and keep serving it while
# revalidating, or when the service fails.
CACHE_CONTROL = b"public, max-age=30, stale-while-revalidate=300, stale-if-error=86400"
# Seconds a client should wait before asking again while the first value is computed.
RETRY_AFTER_SECONDS = 5
# A stale value read starts a refresh at most this often per process.
_STALE_TRIGGER_SECONDS = 10.0
# "Value served" log lines, at most one per source this often.
_SERVED_LOG_SECONDS = 60.0

_JSON = (b"content-type", b"application/json")
_EMPTY_BODY = {
    "cached": False,
    "cacheAge": None,
    "lastUpdated": None,
    "isRefreshing": True,
    "message": "The count is being computed; ask again shortly.",
}


def value_fields(metric: str, value: MetricValue | None, currency: str) -> dict[str, object]:
    """`{"count": n}` for a count, `{"total": "1234.50", "currency": "AUD"}` for money;
    null while there is no value yet."""
    if METRICS[metric].decimals == 0:
        return {"count": None if value is None else value.value}
    total = None if value is None else format_value(metric, value.value)
    if value is not None:
        currency = str(value.report.get("currency", currency))
    return {"total": total, "currency": currency}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    """Every header but CORS, content-length included."""
    body: bytes
    etag: bytes | None = None

    @classmethod
    def make(
        cls, status: int, headers: list[tuple[bytes, bytes]], body: bytes, etag: bytes | None = None
    ) -> Answer:
        return cls(status, [*headers, (b"content-length", str(len(body)).encode())], body, etag)

    def not_modified(self) -> Answer:
        kept = [(k, v) for k, v in self.headers if k in (b"etag", b"cache-control")]
        return Answer.make(304, kept, b"", self.etag)


class CounterReads:
    def __init__(
        self,
        store: ResilientStore,
        refresher: Refresher,
        telemetry: Telemetry,
        *,
        currency: str = "AUD",
    ) -> None:
        self._store = store
        self._refresher = refresher
        self._telemetry = telemetry
        self._currency = currency
        # Per metric, the last answer and what it was built from: most reads reuse it.
        self._cached: dict[str, tuple[tuple[object, ...], Answer]] = {}
        self._last_stale_trigger: dict[str, float] = {}
        self._last_served_log: dict[tuple[str, str], float] = {}

    async def read(self, metric: str, if_none_match: bytes | None) -> Answer:
        """The answer for `GET /api/simpro/{metric}` (`metric` must be in METRICS)."""
        value = await self._store.read(metric)
        source = self._store.storage
        if value is None:
            self._telemetry.count_read(metric, "empty")
            # One per process (the lock does the rest), and after failed refreshes only
            # once their backoff allows: a wrong key must not cost a request per read.
            self._refresher.start_for_read(metric)
            fields = value_fields(metric, None, self._currency)
            body = json.dumps({**fields, **_EMPTY_BODY, "source": source}, separators=(",", ":"))
            headers = [
                _JSON,
                (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                (b"cache-control", b"no-store"),
            ]
            return Answer.make(200, headers, body.encode())
        self._telemetry.count_read(metric, source)
        now = time.time()
        key = (value, int(now - value.computed_at), source)
        cached = self._cached.get(metric)
        if cached is None or cached[0] != key:
            cached = (key, self._build(metric, value, now, source))
            self._cached[metric] = cached
        answer = cached[1]
        if now >= value.computed_at + value.ttl:  # stale: make sure a refresh is on its way
            monotonic = time.monotonic()
            last = self._last_stale_trigger.get(metric, -_STALE_TRIGGER_SECONDS)
            if monotonic - last >= _STALE_TRIGGER_SECONDS:
                self._last_stale_trigger[metric] = monotonic
                self._refresher.start_for_read(metric)
        if if_none_match is not None and etag_matches(if_none_match, answer.etag):
            return answer.not_modified()
        return answer

    def _build(self, metric: str, value: MetricValue, now: float, source: str) -> Answer:
        age = int(value.age(now))
        fields = value_fields(metric, value, self._currency)
        monotonic = time.monotonic()
        last = self._last_served_log.get((metric, source), -_SERVED_LOG_SECONDS)
        if monotonic - last >= _SERVED_LOG_SECONDS:
            self._last_served_log[(metric, source)] = monotonic
            shown = fields.get("count", fields.get("total"))
            log.info("Value served: %s %s from %s (age %s s)", shown, metric, source, age)
        etag = f'W/"{value.fence}-{value.value}-{int(value.computed_at)}"'.encode()
        body = json.dumps(
            {
                **fields,
                "cached": True,
                "cacheAge": age,
                "source": source,
                "lastUpdated": int(value.computed_at * 1000),
                "stale": value.is_stale(now),
            },
            separators=(",", ":"),
        ).encode()
        headers = [_JSON, (b"etag", etag), (b"cache-control", CACHE_CONTROL)]
        return Answer.make(200, headers, body, etag)


def etag_matches(if_none_match: bytes, etag: bytes | None) -> bool:
    """RFC 9110 weak comparison of an If-None-Match list (or `*`) with our ETag."""
    if if_none_match == etag:
        return True
    if etag is None:
        return False
    candidates = [tag.strip() for tag in if_none_match.split(b",")]
    return b"*" in candidates or etag in candidates or etag.removeprefix(b"W/") in candidates
