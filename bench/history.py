"""Benchmark: the customer growth history read from the invoice ledger, against a full read.

An `InvoiceLedgerStore` in a real redis-server (the embedded one, on its unix socket, as
`serve` runs it) is filled by `rebuild()` with 100,000 invoices: about 14,000 customers
with a Zipf-like skew (a few with hundreds of invoices, most with a handful), each
customer invoiced from its own first day on, over six years; amounts of $10 to $10,000,
1 in 50 a credit note, 1 in 50 without customer. In the same run it measures:

- the baseline: every invoice entry read (`entries()`: one `HGETALL` per bucket of 100
  invoices), the least Redis work that reads every entry;
- the first dates recomputed from every entry (that read, then the minimum per customer:
  what a history read would cost if the ledger did not keep them);
- `first_day_counts()`: the first days the ledger keeps (one MULTI of
  `first_day_numbers`);
- `CustomerGrowth.history("month", ready=True)` right after an `apply()` (read and
  group), and while the ledger version does not change (cached);
- `apply()` of an invoice of the busiest customer (keeping its days parses its day list);
- `growth_history(...)` per month, quarter and year over the first dates (pure Python);
- the memory of the format-3 ledger (`MEMORY USAGE ... SAMPLES 0` of its keys, the
  buckets summed), and of format 2's four hashes of the same invoices
  (`bench/ledger_memory.py` measures `used_memory` at several sizes).

Run: `.venv/bin/python -m bench.history [--record]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis
from tests.ledger_format2 import format2_keys, write_format2_ledger

from bench.record import record
from simpro_counter.growth import CustomerGrowth
from simpro_counter.keys import Keys
from simpro_counter.metrics import Interval, InvoiceEntry, growth_history
from simpro_counter.store import EmbeddedRedis, connect
from simpro_counter.store.embedded import describe_server
from simpro_counter.store.ledger import InvoiceLedgerStore

T = TypeVar("T")

YEARS = 6
FIRST_DAY = date(2020, 1, 1)
INTERVALS: tuple[Interval, ...] = ("month", "quarter", "year")
# Reading every entry may take longer than the service's 0.25 s socket timeout; the
# service itself never does.
TIMEOUT_SECONDS = 30.0


def make_invoices(invoices: int, customer_ids: int, seed: int) -> dict[int, InvoiceEntry]:
    """Invoice ID -> (customer, cents, date issued), skewed and spread like real books."""
    rng = random.Random(seed)
    days = YEARS * 365
    weights = [1 / (rank + 1) ** 0.8 for rank in range(customer_ids)]
    owners = rng.choices(range(200_000, 200_000 + customer_ids), weights=weights, k=invoices)
    # Each customer's first day: the business grows, so later days are more likely.
    first_day = {
        customer: int(days * rng.random() ** 0.7)
        for customer in range(200_000, 200_000 + customer_ids)
    }
    state: dict[int, InvoiceEntry] = {}
    for invoice, owner in zip(range(10_000, 10_000 + invoices), owners, strict=True):
        cents = int(10 ** rng.uniform(3, 6))
        start = first_day[owner]
        state[invoice] = (
            owner if invoice % 50 else None,
            -cents if rng.random() < 0.02 else cents,
            FIRST_DAY + timedelta(days=rng.randrange(start, days)),
        )
    return state


def _first_dates(state: dict[int, InvoiceEntry]) -> dict[int, date]:
    first: dict[int, date] = {}
    for customer, _, issued in state.values():
        if customer is not None and issued is not None:
            known = first.get(customer)
            first[customer] = issued if known is None else min(known, issued)
    return first


async def _timed(call: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    started = time.perf_counter()
    result = await call()
    return (time.perf_counter() - started) * 1000, result


async def _median_ms(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    return statistics.median([(await _timed(call))[0] for _ in range(repeat)])


async def _first_dates_by_scan(ledger: InvoiceLedgerStore) -> dict[int, date]:
    """Each customer's first date recomputed from every invoice entry (what a history
    read would cost if the ledger did not keep the first days)."""
    first: dict[int, date] = {}
    async for _, (customer, _, issued) in ledger.entries():
        if customer is not None and issued is not None:
            known = first.get(customer)
            if known is None or issued < known:
                first[customer] = issued
    return first


async def _read_every_entry(ledger: InvoiceLedgerStore) -> int:
    return sum([1 async for _ in ledger.entries()])


def state_count(state: dict[int, InvoiceEntry], customer: int) -> int:
    return sum(1 for entry in state.values() if entry[0] == customer)


async def _memory(client: aioredis.Redis, key: str) -> tuple[int, str]:
    usage = int(await client.memory_usage(key, samples=0) or 0)
    return usage, str(await client.object("encoding", key))


@dataclass(frozen=True)
class Results:
    invoices: int
    customers: int
    dated_customers: int
    redis_version: str
    fill_ms: float
    timings: list[tuple[str, float]]
    """(what, ms); the first row is the full-read baseline."""
    memory: list[tuple[str, str, int]]
    """(key, encoding, bytes)."""
    format2_bytes: int
    repeat: int


async def run(redis_url: str, invoices: int, customer_ids: int, repeat: int) -> Results:
    client = connect(redis_url, timeout=TIMEOUT_SECONDS)
    try:
        keys = Keys("bench")
        ledger = InvoiceLedgerStore(client, keys)
        state = make_invoices(invoices, customer_ids, seed=6)
        fill_ms, rebuilt = await _timed(lambda: ledger.rebuild(state.items()))
        assert await _read_every_entry(ledger) == invoices

        hgetall_ms = await _median_ms(lambda: _read_every_entry(ledger), repeat)
        rescan_ms = await _median_ms(lambda: _first_dates_by_scan(ledger), repeat)
        dates = await _first_dates_by_scan(ledger)
        assert dates == _first_dates(state), "the ledger's invoices are not the truth"
        kept_ms = await _median_ms(ledger.first_day_counts, repeat * 10)
        kept = await ledger.first_day_counts()
        assert kept.days == Counter(dates.values()), "the kept first days are not the truth"

        growth = CustomerGrowth(ledger)
        await growth.history("month", ready=True)
        # After a change (an invoice of the busiest customer re-dated), the next request
        # reads the kept first days again and groups them into periods.
        busiest = Counter(e[0] for e in state.values() if e[0] is not None).most_common(1)[0][0]
        invoice, (owner, cents, issued) = next(
            (i, e) for i, e in state.items() if e[0] == busiest and e[2] is not None
        )
        assert issued is not None
        apply_ms: list[float] = []
        changed_ms: list[float] = []
        for step in range(repeat * 10):
            moved: InvoiceEntry = (owner, cents, issued + timedelta(days=1 + step % 2))
            started = time.perf_counter()
            await ledger.apply(invoice, moved)
            apply_ms.append((time.perf_counter() - started) * 1000)
            changed_ms.append((await _timed(lambda: growth.history("month", ready=True)))[0])
        cached_ms = await _median_ms(lambda: growth.history("month", ready=True), repeat * 10)

        timings = [
            ("every invoice entry read (`entries()`, baseline)", hgetall_ms),
            ("first dates recomputed from every invoice (that read, minimum)", rescan_ms),
            ("`first_day_counts()`: the first days the ledger keeps (one MULTI)", kept_ms),
            (
                '`CustomerGrowth.history("month")` after a change (read and group)',
                statistics.median(changed_ms),
            ),
            ('`CustomerGrowth.history("month")`, ledger unchanged (cached)', cached_ms),
            (
                f"`apply()`: one event of the busiest customer ({state_count(state, busiest)} "
                "invoices), counts and first days kept",
                statistics.median(apply_ms),
            ),
        ]
        for interval in INTERVALS:

            async def fold(interval: Interval = interval) -> None:
                growth_history(dates, interval)

            ms = await _median_ms(fold, repeat * 10)
            timings.append((f'`growth_history(dates, "{interval}")`', ms))

        memory = await _format3_memory(client, keys)
        format2_bytes = await _format2_memory(client, state)
        info = await client.info("server")
        return Results(
            invoices=rebuilt.counts.invoices,
            customers=rebuilt.counts.customers,
            dated_customers=len(dates),
            redis_version=describe_server(info),
            fill_ms=fill_ms,
            timings=timings,
            memory=memory,
            format2_bytes=format2_bytes,
            repeat=repeat,
        )
    finally:
        await client.aclose()


async def _format3_memory(client: aioredis.Redis, keys: Keys) -> list[tuple[str, str, int]]:
    """(what, encodings, bytes) of the format-3 ledger's keys, the buckets summed."""
    k = keys.ledger
    memory: list[tuple[str, str, int]] = []
    for stem, index in ((k.entry_bucket, k.entry_buckets), (k.customer_bucket, k.customer_buckets)):
        total, encodings = 0, set()
        for bucket in await client.smembers(index):
            size, encoding = await _memory(client, f"{stem}:{int(bucket)}")
            total += size
            encodings.add(encoding)
        name = stem.rsplit(":", 1)[1]
        memory.append(
            (f"{name}:* ({await client.scard(index):,} keys)", "/".join(encodings), total)
        )
    for key in (k.customer_long, k.first_day_numbers, k.entry_buckets, k.customer_buckets):
        size, encoding = await _memory(client, key)
        memory.append((key.rsplit(":", 1)[1], encoding, size))
    return memory


async def _format2_memory(client: aioredis.Redis, state: dict[int, InvoiceEntry]) -> int:
    """MEMORY USAGE of format 2's four hashes of the same invoices."""
    ledger_keys = Keys("bench-format2").ledger
    await write_format2_ledger(client, ledger_keys, state.items())
    usage = 0
    for key in format2_keys(ledger_keys):
        usage += (await _memory(client, key))[0]
    await client.delete(*format2_keys(ledger_keys))
    return usage


def report(results: Results) -> str:
    baseline = results.timings[0][1]
    per_100k = 100_000 / results.invoices
    ledger_bytes = sum(size for _, _, size in results.memory)
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()} "
        f"({os.cpu_count()} cores), Python {platform.python_version()}, "
        f"{results.redis_version} (embedded, unix socket): {results.invoices:,} invoices over "
        f"{results.customers:,} customers ({results.dated_customers:,} with a first date), "
        f"dates over {YEARS} years; ledger filled by `rebuild()` in {results.fill_ms:,.0f} ms. "
        f"Medians of {results.repeat} runs ({results.repeat * 10} for the cached and pure "
        "Python rows).",
        "",
        "| read | ms | vs reading every entry |",
        "|---|---:|---:|",
    ]
    for name, ms in results.timings:
        lines.append(f"| {name} | {ms:,.2f} | {ms / baseline:.2f} |")
    lines += [
        "",
        "| ledger key | encoding | MB | bytes per invoice |",
        "|---|---|---:|---:|",
    ]
    for name, encoding, size in results.memory:
        lines.append(
            f"| `{name}` | {encoding} | {size / 1e6:.2f} | {size / results.invoices:.0f} |"
        )
    rescan_ms = results.timings[1][1]
    changed_ms = results.timings[3][1]
    cached_ms = results.timings[4][1]
    apply_ms = results.timings[5][1]
    lines += [
        "",
        f"- A history request after the ledger changed costs **{changed_ms:.2f} ms**: the "
        f"ledger keeps the first days, so nothing is recomputed from the invoices (that "
        f"would take {rescan_ms:,.0f} ms, {rescan_ms / baseline:.1f} times reading every entry); "
        f"while it does not change, **{cached_ms:.2f} ms**.",
        f"- Keeping them costs each event little: **{apply_ms:.2f} ms** per `apply()` even "
        "for the customer with the most invoices.",
        f"- Ledger format 3: **{ledger_bytes * per_100k / 1e6:.2f} MB per 100,000 invoices** "
        f"(`MEMORY USAGE`; format 2 of the same invoices: "
        f"{results.format2_bytes * per_100k / 1e6:.2f} MB).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--customer-ids", type=int, default=15_000, help="before the skew")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--record", action="store_true", help="write docs/performance.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir, EmbeddedRedis(Path(data_dir)) as server:
        results = asyncio.run(run(server.url, args.invoices, args.customer_ids, args.repeat))
    text = report(results)
    print(text)
    if args.record:
        record("bench/history.py", text)


if __name__ == "__main__":
    main()
