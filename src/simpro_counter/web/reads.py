"""The hot read path: `GET /api/simpro/customers` answered from the near-cache.

Built to cost a few microseconds: no Redis round trip (the store's near-cache), the JSON
body cached per (value, age second, source), headers pre-encoded. Both the raw ASGI fast
path and the documented FastAPI route answer through it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from simpro_counter.refresh import CUSTOMERS, Refresher
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
    "count": None,
    "cached": False,
    "cacheAge": None,
    "lastUpdated": None,
    "isRefreshing": True,
    "message": "The count is being computed; ask again shortly.",
}


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
    def __init__(self, store: ResilientStore, refresher: Refresher, telemetry: Telemetry) -> None:
        self._store = store
        self._refresher = refresher
        self._telemetry = telemetry
        # The last answer and what it was built from: under load, most reads reuse it.
        self._cached_key: tuple[object, ...] = ()
        self._cached = Answer(200, [], b"")
        self._last_stale_trigger = -_STALE_TRIGGER_SECONDS
        self._last_served_log: dict[str, float] = {}

    async def customers(self, if_none_match: bytes | None) -> Answer:
        value = await self._store.read(CUSTOMERS)
        source = self._store.storage
        if value is None:
            self._telemetry.count_read(CUSTOMERS, "empty")
            self._refresher.start_background(CUSTOMERS)  # one per process; the lock does the rest
            body = json.dumps({**_EMPTY_BODY, "source": source}, separators=(",", ":"))
            headers = [
                _JSON,
                (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                (b"cache-control", b"no-store"),
            ]
            return Answer.make(200, headers, body.encode())
        self._telemetry.count_read(CUSTOMERS, source)
        now = time.time()
        key = (value, int(now - value.computed_at), source)
        if key != self._cached_key:
            self._cached = self._build(value, now, source)
            self._cached_key = key
        answer = self._cached
        if now >= value.computed_at + value.ttl:  # stale: make sure a refresh is on its way
            monotonic = time.monotonic()
            if monotonic - self._last_stale_trigger >= _STALE_TRIGGER_SECONDS:
                self._last_stale_trigger = monotonic
                self._refresher.start_background(CUSTOMERS)
        if if_none_match is not None and etag_matches(if_none_match, answer.etag):
            return answer.not_modified()
        return answer

    def _build(self, value: MetricValue, now: float, source: str) -> Answer:
        age = int(value.age(now))
        monotonic = time.monotonic()
        if monotonic - self._last_served_log.get(source, -_SERVED_LOG_SECONDS) >= (
            _SERVED_LOG_SECONDS
        ):
            self._last_served_log[source] = monotonic
            log.info(
                "Value served: %s customers from %s (age %s s)", f"{value.value:,}", source, age
            )
        etag = f'W/"{value.fence}-{value.value}-{int(value.computed_at)}"'.encode()
        body = json.dumps(
            {
                "count": value.value,
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
