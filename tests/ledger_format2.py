"""A ledger of format 2, written as the previous version's `rebuild()` left it.

For the upgrade tests and `bench/ledger_memory.py`: four large hashes, ISO dates,
each customer's count kept twice (in `customer_invoices` and, for its dated invoices, in
`customer_days`). The counts, the version and the journal are the same keys in every
format.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date

import redis.asyncio as aioredis

from simpro_counter.keys import LedgerKeys
from simpro_counter.metrics.invoices import InvoiceEntry

FIELDS_PER_COMMAND = 1_000


def encode_entry_format2(entry: InvoiceEntry) -> str:
    """`customerID|cents|YYYY-MM-DD`, customer and date empty when unknown."""
    customer, cents, issued = entry
    return (
        f"{'' if customer is None else customer}|{cents}|"
        f"{'' if issued is None else issued.isoformat()}"
    )


def encode_days_format2(days: Counter[date]) -> str:
    """`2024-03-05=2,2024-07-01=1`."""
    return ",".join(f"{day.isoformat()}={n}" for day, n in sorted(days.items()) if n > 0)


async def write_format2_ledger(
    client: aioredis.Redis, keys: LedgerKeys, entries: Iterable[tuple[int, InvoiceEntry]]
) -> None:
    """Replace whatever is at `keys` with the format-2 ledger of `entries`."""
    retired = keys.retired
    per_customer: Counter[int] = Counter()
    days_of: dict[int, Counter[date]] = {}
    encoded: dict[str, str] = {}
    invoices = cents = 0
    for invoice, entry in entries:
        encoded[str(invoice)] = encode_entry_format2(entry)
        invoices += 1
        customer, amount, issued = entry
        cents += amount
        if customer is not None:
            per_customer[customer] += 1
            if issued is not None:
                days_of.setdefault(customer, Counter())[issued] += 1
    hashes: dict[str, dict[str, str]] = {
        retired.invoice_entries: encoded,
        retired.customer_invoices: {str(c): str(n) for c, n in per_customer.items()},
        retired.customer_days: {str(c): encode_days_format2(d) for c, d in days_of.items()},
        retired.first_days: {
            day.isoformat(): str(n) for day, n in Counter(min(d) for d in days_of.values()).items()
        },
    }
    await client.delete(*hashes)
    for key, mapping in hashes.items():
        items = list(mapping.items())
        for start in range(0, len(items), FIELDS_PER_COMMAND):
            await client.hset(key, mapping=dict(items[start : start + FIELDS_PER_COMMAND]))
    await client.mset(
        {
            keys.customers: str(len(per_customer)),
            keys.invoices: str(invoices),
            keys.revenue_cents: str(cents),
        }
    )
    version = await client.incr(keys.version)
    await client.rpush(keys.journal, f"{version}:rebuild")


def format2_keys(keys: LedgerKeys) -> tuple[str, str, str, str]:
    """The four hashes of format 2."""
    r = keys.retired
    return (r.invoice_entries, r.customer_invoices, r.customer_days, r.first_days)
