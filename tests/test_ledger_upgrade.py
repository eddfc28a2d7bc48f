"""The ledger upgrade end to end: a format-2 ledger in Redis, this version's full refresh
against the simulator, and then the ledger in format 3 only, exactly the simulator's truth
(counts, every invoice, the growth history), kept so by the next incremental sync."""

from __future__ import annotations

import uuid
from collections import Counter
from decimal import Decimal

from simpro_counter.growth import CustomerGrowth
from simpro_counter.keys import Keys
from simpro_counter.metrics import INVOICE_GROUP, growth_history
from simpro_counter.metrics.invoices import InvoiceEntry
from simpro_counter.refresh import Refresher
from simpro_counter.simulator import Simulator, SimulatorConfig
from simpro_counter.store import ResilientStore, connect
from simpro_counter.store.ledger import LEDGER_FORMAT, InvoiceLedgerStore
from simpro_counter.telemetry import Telemetry
from tests.conftest import client_config
from tests.ledger_format2 import format2_keys, write_format2_ledger
from tests.ledger_reads import read_entries, read_first_invoice_dates

pytest_plugins = ["tests.redis_fixtures"]


def truth_entries(simulator: Simulator) -> dict[int, InvoiceEntry]:
    """Every invoice of the simulator as the ledger must keep it (all of them count)."""
    dataset = simulator.dataset
    entries: dict[int, InvoiceEntry] = {}
    for invoice_id in dataset.invoice_ids():
        invoice = dataset.invoice(invoice_id)
        entries[invoice_id] = (invoice.customer_id, invoice.ex_tax, invoice.date_issued)
    return entries


async def test_a_format_2_ledger_is_upgraded_by_the_first_full_refresh(redis_url: str) -> None:
    simulator = Simulator(SimulatorConfig(invoices=600, customers=150, seed=31, rate=0))
    client = connect(redis_url)
    keys = Keys(f"upgrade-{uuid.uuid4().hex[:8]}")
    store = ResilientStore(client, keys)
    await store.start()
    try:
        ledger = InvoiceLedgerStore(client, keys)
        # The previous version's ledger, and then Simpro moved on: it is stale.
        await write_format2_ledger(client, keys.ledger, truth_entries(simulator).items())
        dataset = simulator.dataset
        ids = dataset.invoice_ids()
        dataset.delete_invoice(ids[0])
        dataset.update_invoice(ids[1], customer_id=dataset.uninvoiced_customer_ids()[0])
        dataset.update_invoice(ids[2], total_ex_tax=Decimal("1234.56"))
        assert await client.exists(*format2_keys(keys.ledger)) == 4

        refresher = Refresher(
            store,
            client_config(),
            ttl=60,
            telemetry=Telemetry(),
            transport=simulator.transport(),
            ledger=ledger,
        )
        values = await refresher.refresh_all(INVOICE_GROUP)
        truth = simulator.truth()
        expected = {
            "customers": truth.customers,
            "invoices": truth.invoices,
            "revenue": int(truth.revenue * 100),
        }
        assert {name: value.value for name, value in values.items()} == expected
        assert all(v.provenance.ledger_format == LEDGER_FORMAT == 3 for v in values.values())
        assert all(refresher.built_on_ledger(v) for v in values.values())
        # Format 3 only, exactly the truth.
        assert not await client.exists(*keys.ledger.retired.all())
        assert (await ledger.counts()).metric_values() == expected
        assert await read_entries(ledger) == truth_entries(simulator)
        first_dates = dataset.first_invoice_dates()
        assert await read_first_invoice_dates(ledger) == first_dates
        assert (await ledger.first_day_counts()).days == Counter(first_dates.values())
        growth = CustomerGrowth(ledger)
        history = await growth.history("month", ready=True)
        assert history.points == growth_history(first_dates, "month")

        # Built on format 3: the next incremental sync keeps it exact through apply().
        dataset.update_invoice(ids[3], customer_id=dataset.uninvoiced_customer_ids()[0])
        dataset.add_invoice(without_customer=True)
        values = await refresher.refresh_all(INVOICE_GROUP, mode="incremental")
        truth = simulator.truth()
        assert values["customers"].value == truth.customers
        assert values["invoices"].value == truth.invoices
        assert await read_entries(ledger) == truth_entries(simulator)
        assert await read_first_invoice_dates(ledger) == dataset.first_invoice_dates()
    finally:
        await store.aclose()
        await client.aclose()
