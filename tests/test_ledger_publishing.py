"""Values published from the invoice ledger are ordered by (fence, ledger version): a worker
stopped half-way, an event between a refresh's ledger swap and its publish, or a slower
writer never leave customers, invoices and revenue behind the ledger or out of step."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from decimal import Decimal

import pytest
from pydantic import SecretStr
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from simpro_counter.keys import Keys
from simpro_counter.metrics import INVOICE_GROUP, group_members
from simpro_counter.publishing import LedgerPublish, publish_from_ledger
from simpro_counter.refresh import Refresher
from simpro_counter.settings import Settings, simpro_config
from simpro_counter.simpro import SimproClient
from simpro_counter.simulator import Simulator, SimulatorConfig
from simpro_counter.store import MemoryStore, MetricValue, ResilientStore, connect
from simpro_counter.store.ledger import InvoiceLedgerStore
from simpro_counter.webhooks.queue import decode_fields
from simpro_counter.webhooks.worker import WebhookWorker
from simpro_counter.wiring import build_refresher

INVOICE_METRICS = ("customers", "invoices", "revenue")


@dataclass
class Parts:
    simulator: Simulator
    store: ResilientStore
    ledger: InvoiceLedgerStore
    refresher: Refresher
    worker: WebhookWorker
    settings: Settings

    async def published(self) -> tuple[int, int, int]:
        values = [await self.store.read(metric) for metric in INVOICE_METRICS]
        assert all(value is not None for value in values)
        return tuple(value.value for value in values if value is not None)  # type: ignore[return-value]

    def truth(self) -> tuple[int, int, int]:
        truth = self.simulator.truth()
        return truth.customers, truth.invoices, int(truth.revenue * 100)

    async def deliver(self, invoice_id: int) -> bool:
        """One `invoice.created` delivery as the worker applies it from the queue."""
        fields = {
            "resource": "invoice",
            "id": str(invoice_id),
            "event": "invoice.created",
            "company": "0",
        }
        config = simpro_config(self.settings)
        async with SimproClient(config, transport=self.simulator.transport()) as client:
            return await self.worker._apply(client, decode_fields(fields))


@asynccontextmanager
async def parts(redis_url: str, seed: int) -> AsyncIterator[Parts]:
    simulator = Simulator(SimulatorConfig(invoices=300, customers=100, seed=seed, rate=0))
    settings = Settings(
        simpro_base_url="https://simpro.test",
        simpro_api_key=SecretStr("demo-key"),
        simpro_rate_limit=1000.0,
        redis_url=redis_url,
        key_prefix=f"order-{uuid.uuid4().hex[:8]}",
    )
    client = connect(redis_url)
    keys = Keys(settings.key_prefix)
    store = ResilientStore(client, keys)
    await store.start()
    ledger = InvoiceLedgerStore(client, keys)
    refresher = build_refresher(settings, store, ledger, transport=simulator.transport())
    worker = WebhookWorker(
        client,
        keys,
        store,
        ledger,
        simpro_config(settings),
        refresher,
        transport=simulator.transport(),
    )
    try:
        await refresher.refresh_all("customers")
        yield Parts(simulator, store, ledger, refresher, worker, settings)
    finally:
        await refresher.aclose()
        await store.aclose()
        await client.aclose()


async def test_a_delivery_stopped_between_publishes_is_completed_by_its_redelivery(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with parts(redis_url, seed=71) as p:
        original = p.store.publish
        calls = 0

        async def fails_on_the_second(value: MetricValue) -> bool:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise RedisTimeoutError("Timeout reading from socket")
            return await original(value)

        monkeypatch.setattr(p.store, "publish", fails_on_the_second)
        newcomer = p.simulator.dataset.uninvoiced_customer_ids()[0]
        invoice = p.simulator.dataset.add_invoice(newcomer, Decimal("1000.00"))
        with pytest.raises(RedisError):
            await p.deliver(invoice)  # applied to the ledger, customers published, then cut
        assert await p.published() != p.truth()
        monkeypatch.setattr(p.store, "publish", original)
        assert await p.deliver(invoice)  # the redelivery: the ledger says "unchanged" ...
        assert await p.published() == p.truth()  # ... and the values catch up anyway


async def test_an_event_between_a_refreshs_ledger_swap_and_its_publish_is_kept(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with parts(redis_url, seed=72) as p:
        original = p.store.publish
        fired = False

        async def event_first(value: MetricValue) -> bool:
            nonlocal fired
            if not fired and value.metric == "invoices" and "ledgerFormat" in value.details:
                fired = True  # the refresh has swapped the ledger and published customers
                newcomer = p.simulator.dataset.uninvoiced_customer_ids()[0]
                invoice = p.simulator.dataset.add_invoice(newcomer, Decimal("5.00"))
                assert await p.deliver(invoice)
            return await original(value)

        monkeypatch.setattr(p.store, "publish", event_first)
        await p.refresher.refresh_all("customers")
        assert fired
        assert await p.published() == p.truth()
        counts = await p.ledger.counts()
        for metric in INVOICE_METRICS:
            value = await p.store.read(metric)
            assert value is not None
            assert value.ledger_version == counts.version


async def test_counts_read_earlier_never_overwrite_later_ones_under_one_fence(
    redis_url: str,
) -> None:
    async with parts(redis_url, seed=73) as p:
        current = await p.store.read("customers")
        assert current is not None
        later = replace(
            current.with_details({**current.details, "ledgerVersion": current.ledger_version + 2}),
            value=current.value + 1,
        )
        earlier = replace(
            current.with_details({**current.details, "ledgerVersion": current.ledger_version + 1}),
            value=current.value + 5,
        )
        assert await p.store.publish(later)
        assert not await p.store.publish(earlier)  # same fence, older ledger version
        stored = await p.store.read("customers")
        assert stored is not None
        assert stored.value == later.value
        newer_fence = replace(earlier, fence=current.fence + 1)
        assert await p.store.publish(newer_fence)  # a higher fence always wins


async def test_the_memory_store_orders_values_the_same_way() -> None:
    memory = MemoryStore()
    base = MetricValue("revenue", 100, computed_at=1.0, ttl=60, fence=3)
    at = [replace(base.with_details({"ledgerVersion": v}), value=v) for v in (10, 11)]
    assert await memory.publish(at[1])
    assert not await memory.publish(at[0])
    assert not memory.remember(at[0])
    stored = await memory.read("revenue")
    assert stored is not None
    assert stored.value == 11
    assert await memory.publish(replace(at[0], fence=4))


async def test_publishing_says_when_it_gave_up_behind_other_writers(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with parts(redis_url, seed=74) as p:
        original = p.store.publish

        async def a_newer_value_always_won(value: MetricValue) -> bool:
            return False

        monkeypatch.setattr(p.store, "publish", a_newer_value_always_won)
        newcomer = p.simulator.dataset.uninvoiced_customer_ids()[0]
        invoice = p.simulator.dataset.add_invoice(newcomer, Decimal("12.34"))
        assert await p.deliver(invoice)  # in the ledger; no value could be published
        publish = publish_from_ledger(p.store, p.ledger, p.refresher.invoice_filter)
        assert await publish is LedgerPublish.GAVE_UP  # not "done": the values are behind
        assert await p.published() != p.truth()
        monkeypatch.setattr(p.store, "publish", original)
        publish = publish_from_ledger(p.store, p.ledger, p.refresher.invoice_filter)
        assert await publish is LedgerPublish.CAUGHT_UP
        assert await p.published() == p.truth()


@pytest.mark.parametrize("position", [0, -1], ids=["first-member", "last-member"])
async def test_nothing_is_published_over_a_value_no_full_scan_built_on_the_ledger(
    redis_url: str, position: int
) -> None:
    """Not even the other members of the group: a group is never published half."""
    async with parts(redis_url, seed=75) as p:
        current = await p.store.read(group_members(INVOICE_GROUP)[position])
        assert current is not None
        # As a version before the ledger left it: no ledger version, format or filter.
        assert await p.store.publish(replace(current.with_details({}), fence=current.fence + 1))
        before = await p.published()
        newcomer = p.simulator.dataset.uninvoiced_customer_ids()[0]
        invoice = p.simulator.dataset.add_invoice(newcomer, Decimal("1.00"))
        assert await p.deliver(invoice)
        publish = publish_from_ledger(p.store, p.ledger, p.refresher.invoice_filter)
        assert await publish is LedgerPublish.NOT_BUILT_ON_LEDGER
        assert await p.published() == before
