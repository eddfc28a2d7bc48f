"""A stored value's provenance is typed in memory and stored as it always was: values left
by earlier versions load into the typed fields, and earlier replicas still read ours."""

from __future__ import annotations

import json
from dataclasses import replace

import redis.asyncio as aioredis

from simpro_counter.keys import Keys
from simpro_counter.publishing import built_on_ledger, can_sync
from simpro_counter.store import EmbeddedRedis, MetricValue, RedisStore
from simpro_counter.store.ledger import LEDGER_FORMAT
from simpro_counter.store.values import Provenance
from tests.redis_fixtures import sync_client

pytest_plugins = ["tests.redis_fixtures"]

# `details` as the version before typed provenance wrote it after a full refresh.
STORED_DETAILS = {
    "count": 450,
    "totalInvoices": 2847,
    "pages": 12,
    "requests": 14,
    "retries": 0,
    "duration": 12.384,
    "cursor": "Thu, 05 Feb 2026 11:59:48 GMT",
    "invoiceFilter": "types=*;stages=*",
    "ledgerVersion": 17,
    "ledgerFormat": LEDGER_FORMAT,
    "fullScanAt": 1770292800.12,
}
META = json.dumps({"computed_at": 1770292801.5, "ttl": 21600, "fence": 4,
                   "details": STORED_DETAILS})  # fmt: skip


def test_details_stored_before_load_into_the_typed_provenance_and_the_report() -> None:
    value = MetricValue.from_parts("customers", "450", None, META)
    assert value.provenance == Provenance(
        ledger_version=17,
        ledger_format=LEDGER_FORMAT,
        invoice_filter="types=*;stages=*",
        cursor="Thu, 05 Feb 2026 11:59:48 GMT",
        full_scan_at=1770292800.12,
    )
    assert value.report == {"count": 450, "totalInvoices": 2847, "pages": 12, "requests": 14,
                            "retries": 0, "duration": 12.384}  # fmt: skip
    assert value.order() == (4, 17)
    assert built_on_ledger(value)
    assert can_sync(value)
    # Shown and written back with the same fields.
    assert value.details == STORED_DETAILS
    assert json.loads(value.meta_json())["details"] == STORED_DETAILS


def test_a_value_without_provenance_is_ordered_first_and_never_moved_by_the_ledger() -> None:
    value = MetricValue.from_parts("customers", "450", "1770292801500", None)
    assert value.provenance == Provenance()
    assert value.order() == (0, -1)
    assert not built_on_ledger(value)
    without_cursor = value.with_details({**STORED_DETAILS, "cursor": None})
    assert built_on_ledger(without_cursor)
    assert not can_sync(without_cursor)


def test_a_provenance_field_of_an_unexpected_type_is_unknown() -> None:
    value = MetricValue.from_parts("customers", "450", None, META)
    odd = value.with_details({**STORED_DETAILS, "ledgerFormat": str(LEDGER_FORMAT)})
    assert odd.provenance.ledger_format is None
    assert not built_on_ledger(odd)  # "2" was never equal to 2 before either
    other_filter = value.with_details({**STORED_DETAILS, "invoiceFilter": ["types=*"]})
    assert other_filter.provenance.invoice_filter is None


async def test_redis_keeps_the_provenance_inside_details_for_earlier_replicas(
    redis_server: EmbeddedRedis, redis_client: aioredis.Redis
) -> None:
    keys = Keys("values")
    store = RedisStore(redis_client, keys)
    stored = MetricValue.from_parts("customers", "450", None, META)
    assert await store.publish(stored)
    meta = keys.metric("customers").meta
    with sync_client(redis_server) as raw:
        written = json.loads(raw.get(meta))
        assert written["details"] == STORED_DETAILS
        assert raw.get(keys.metric("customers").published_ledger_version) == "17"
        # A value an earlier version wrote (a newer fence) loads into the typed fields.
        raw.set(meta, json.dumps({**json.loads(META), "fence": 5}))
    loaded = await store.read("customers")
    assert loaded is not None
    assert loaded.provenance == stored.provenance
    assert loaded == replace(stored, fence=5)
