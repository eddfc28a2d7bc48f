"""The ledger rebuild streams: bounded memory, nothing left behind, the event loop served.

Against the real redis-server the suite starts; the entries come from a real
`InvoiceFold` or from plain collections.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
import redis.asyncio as aioredis

from simpro_counter.keys import Keys
from simpro_counter.metrics import InvoiceFold
from simpro_counter.metrics.invoice_table import InvoiceTable
from simpro_counter.metrics.invoices import InvoiceEntry
from simpro_counter.store.ledger import InvoiceLedgerStore
from tests.ledger_reads import read_customer_values, read_entries, read_first_invoice_dates

pytest_plugins = ["tests.redis_fixtures"]

FIRST_DAY = date(2020, 1, 1)


def entry_of(invoice_id: int, customers: int) -> InvoiceEntry:
    """A build like the scale bench's: one customer per 10 invoices, some without one."""
    customer = None if invoice_id % 50 == 0 else 10_000 + invoice_id * 31 % customers
    issued = None if invoice_id % 70 == 0 else FIRST_DAY + timedelta(days=invoice_id % 2500)
    return customer, invoice_id * 7919 % 1_000_000 - 5_000, issued


def fold_of(invoices: int) -> InvoiceFold:
    fold = InvoiceFold()
    for invoice_id in range(1, invoices + 1):
        fold.put(invoice_id, entry_of(invoice_id, max(1, invoices // 10)))
    return fold


class ChangingSource:
    """Entries that are not the same on the second read: one more invoice at the end."""

    def __init__(self, entries: list[tuple[int, InvoiceEntry]]) -> None:
        self.entries = entries
        self.reads = 0

    def __iter__(self) -> Iterator[tuple[int, InvoiceEntry]]:
        self.reads += 1
        yield from self.entries
        if self.reads > 1:
            yield 10**9, (None, 1, None)


def test_a_fold_yields_its_counted_invoices_in_id_order_again_and_again() -> None:
    """Also those waiting in the table's side dict (far from the end) or beyond int64."""
    fold = InvoiceFold(storage=InvoiceTable(short_tail=2, merge_at=10**6))
    order = [*range(100, 200), *range(1, 100, 3), 2**70, -(2**70), *range(50, 60)]
    for invoice_id in order:
        fold.put(invoice_id, entry_of(invoice_id, 7) if invoice_id % 5 else None)
    fold.remove(150)
    counted = fold.counted()
    ids = [invoice_id for invoice_id, _ in counted]
    assert ids == sorted({i for i in order if i % 5 and i != 150})
    assert [invoice_id for invoice_id, _ in counted] == ids  # a second read, the same


async def building_keys(client: aioredis.Redis) -> list[str]:
    return [str(key) async for key in client.scan_iter(match="*building*")]


async def test_a_bad_amount_late_in_the_entries_is_refused_before_any_write(
    redis_client: aioredis.Redis,
) -> None:
    ledger = InvoiceLedgerStore(redis_client, Keys("t"), batch_size=500)
    await ledger.rebuild([(1, (5, 100, FIRST_DAY))])
    before = await ledger.counts()
    entries = [(i, entry_of(i, 300)) for i in range(1, 3_001)]
    entries.append((3_001, (7, 2**62, None)))  # the last one, after six batches' worth
    with pytest.raises(ValueError, match="beyond what the ledger can add up exactly"):
        await ledger.rebuild(entries)
    assert await building_keys(redis_client) == []
    assert await ledger.counts() == before
    assert await read_entries(ledger) == {1: (5, 100, FIRST_DAY)}


async def test_a_rebuild_failing_after_some_batches_leaves_no_temporary_key(
    redis_client: aioredis.Redis,
) -> None:
    ledger = InvoiceLedgerStore(redis_client, Keys("t"), batch_size=500)
    await ledger.rebuild([(1, (5, 100, FIRST_DAY))])
    before = await ledger.counts()
    source = ChangingSource([(i, entry_of(i, 300)) for i in range(1, 3_001)])
    with pytest.raises(RuntimeError, match="the entries changed during the rebuild"):
        await ledger.rebuild(source)
    assert source.reads == 2  # the second pass ran, and had written its batches
    assert await building_keys(redis_client) == []
    assert await ledger.counts() == before
    assert await read_entries(ledger) == {1: (5, 100, FIRST_DAY)}


async def test_a_streamed_rebuild_equals_the_fold_whatever_the_batch_or_order(
    redis_client: aioredis.Redis,
) -> None:
    fold = fold_of(2_345)
    expected = dict(fold.counted())
    values: dict[int, str] | None = None
    for batch_size, entries in (
        (5_000, fold.counted()),
        (150, fold.counted()),
        (1, fold.counted()),
        (150, list(reversed(list(fold.counted())))),  # against ID order: buckets re-opened
        (150, iter(list(fold.counted()))),  # a one-shot iterator
    ):
        ledger = InvoiceLedgerStore(redis_client, Keys("s"), batch_size=batch_size)
        result = await ledger.rebuild(entries)
        assert result.counts[:3] == (fold.customers(), fold.invoices(), fold.revenue_cents())
        assert await read_entries(ledger) == expected
        assert await read_first_invoice_dates(ledger) == fold.first_invoice_date_by_customer()
        customer_values = await read_customer_values(ledger)
        assert values is None or customer_values == values
        values = customer_values
    assert await building_keys(redis_client) == []


async def test_the_first_pass_lets_the_event_loop_run(redis_client: aioredis.Redis) -> None:
    """The refresh lock's heartbeat shares the loop: a long pass must not starve it.

    The first pass does no I/O, so the ticker only advances if the rebuild yields.
    """
    ticks = 0
    seen_in_first_pass: list[int] = []
    entries = [(i, entry_of(i, 2_000)) for i in range(1, 20_001)]

    class Watched:
        def __init__(self) -> None:
            self.reads = 0

        def __iter__(self) -> Iterator[tuple[int, InvoiceEntry]]:
            self.reads += 1
            for item in entries:
                if self.reads == 1:
                    seen_in_first_pass.append(ticks)
                yield item

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    running = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0)
        await InvoiceLedgerStore(redis_client, Keys("l")).rebuild(Watched())
    finally:
        running.cancel()
    assert seen_in_first_pass[-1] - seen_in_first_pass[0] >= 3  # 20,000 entries: 4 yields


async def test_the_rebuild_holds_a_batch_not_the_ledger(redis_client: aioredis.Redis) -> None:
    """Python memory of a rebuild of 50,000 invoices (5,000 customers), the fold aside.

    Measured with tracemalloc: the plan that encoded the whole ledger before writing it
    peaked at 205 bytes per invoice in the plan alone (tracemalloc, this build); the
    streaming rebuild at 65 (the survey's per-customer day arrays, ~25, and one
    batch of encoded entries with its pipeline). 100 leaves room for the allocator and
    fails if the ledger is materialised again.
    """
    invoices = 50_000
    fold = fold_of(invoices)
    ledger = InvoiceLedgerStore(redis_client, Keys("m"))
    await ledger.rebuild([(1, (1, 1, None))])  # scripts loaded, connection pool warm
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = await ledger.rebuild(fold.counted())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.counts.invoices == fold.invoices()
    per_invoice = (peak - before) / invoices
    assert per_invoice < 100, f"{per_invoice:.0f} bytes per invoice at the rebuild's peak"
