"""The simulated build's mutable state: records (in columns), their indexes, mutations, truth."""

from __future__ import annotations

import gc
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from .columns import NO_CUSTOMER
from .generate import Records, generate
from .records import BUILD_TZ, Customer, Invoice, Renderer, WorkItem, to_cents
from .table import Row, Table
from .truth import Truth, compute_truth

Clock = Callable[[], float]
# The Stages an invoice can be in (the generator uses the same two).
INVOICE_STAGES: tuple[str, ...] = ("Approved", "Pending")


@dataclass(frozen=True)
class ChangeEvent:
    """One change to the data set, as a Simpro webhook names it ("invoice.created")."""

    resource: str  # "invoice"
    action: str  # "created" | "updated" | "deleted"
    record_id: int
    timestamp: int  # epoch seconds of the change (the record's DateModified)
    # An update that moved an invoice to another Stage: the new one ("Approved").
    new_stage: str | None = None
    # That update changed the Stage and nothing else.
    stage_only: bool = False

    @property
    def name(self) -> str:
        return f"{self.resource}.{self.action}"


class Dataset:
    """Seeded records of the first company, changeable while the simulator serves them.

    Every mutation sets DateModified to the current second of `clock` and is visible
    to the next request and to truth() at once. All access goes through `lock`
    because tests mutate from their own thread while uvicorn serves from another.

    listeners are called with a ChangeEvent after every mutation, synchronously and
    still under `lock` (so they see changes in order); they must be quick and not
    raise (the webhook dispatcher only queues a delivery).
    """

    def __init__(self, records: Records, *, clock: Clock, seed: int) -> None:
        self.lock = threading.RLock()
        self.listeners: list[Callable[[ChangeEvent], None]] = []
        self._clock = clock
        self._rng = random.Random(f"simpro-mutations:{seed}")
        self._customers: dict[int, Customer] = {c.id: c for c in records.customers}
        self._invoices = records.invoices
        self._jobs = records.jobs
        self._quotes = records.quotes
        self._render = Renderer(self._customers)
        # IDs are never reused after a delete, like a database sequence.
        self._last_invoice_id = self._invoices.ids[-1] if len(self._invoices) else 10000
        # Rows are rendered from the records when a page shows them: nothing rendered
        # is kept, so a million invoices cost their columns and indexes only.
        self.tables: Mapping[str, Table] = {
            "invoices": Table.indexed(
                self._invoices.ids, self._invoices.modified, self._invoice_row
            ),
            "customers": Table.indexed(
                sorted(self._customers),
                (self._customers[c].date_modified for c in sorted(self._customers)),
                self._customer_row,
                kinds={c.id: c.kind for c in records.customers},
            ),
            "jobs": Table.indexed(self._jobs.ids, self._jobs.modified, self._job_row),
            "quotes": Table.indexed(self._quotes.ids, self._quotes.modified, self._quote_row),
        }

    @classmethod
    def generate(cls, *, invoices: int, customers: int, seed: int, clock: Clock) -> Dataset:
        with _gc_paused():
            today = build_date(clock())
            records = generate(invoices=invoices, customers=customers, seed=seed, today=today)
            return cls(records, clock=clock, seed=seed)

    # -- reading -------------------------------------------------------------------

    def truth(self) -> Truth:
        with self.lock:
            return compute_truth(
                self._invoices.customer_ids(),
                self._invoices.ex_tax,
                self._customers.values(),
                len(self._jobs),
                len(self._quotes),
            )

    def invoice_ids(self) -> list[int]:
        with self.lock:
            return list(self._invoices.ids)

    def invoice(self, invoice_id: int) -> Invoice:
        """The invoice as a value; KeyError when there is none."""
        with self.lock:
            return self._invoices.get(invoice_id)

    def customer_ids(self) -> list[int]:
        with self.lock:
            return sorted(self._customers)

    def first_invoice_dates(self) -> dict[int, date]:
        """Each invoiced customer's earliest DateIssued: the truth of the growth history."""
        with self.lock:
            first: dict[int, int] = {}  # day ordinals
            for owner, issued in zip(self._invoices.customers, self._invoices.issued, strict=True):
                if owner != NO_CUSTOMER and (owner not in first or issued < first[owner]):
                    first[owner] = issued
            return {owner: date.fromordinal(day) for owner, day in first.items()}

    def uninvoiced_customer_ids(self) -> list[int]:
        """Customers with no invoice: giving one an invoice adds one to the true count."""
        with self.lock:
            invoiced = set(self._invoices.customers)
            return sorted(set(self._customers) - invoiced)

    # -- mutations -----------------------------------------------------------------

    def add_invoice(
        self,
        customer_id: int | None = None,
        total_ex_tax: Decimal | None = None,
        *,
        without_customer: bool = False,
    ) -> int:
        """Create a TaxInvoice issued today; returns its ID.

        customer_id None picks a random existing customer (without_customer=True
        makes an invoice whose Customer is null instead).
        """
        with self.lock:
            if without_customer:
                owner = None
            elif customer_id is None:
                owner = self._rng.choice(sorted(self._customers))
            else:
                owner = self._existing_customer(customer_id)
            now = self._now()
            invoice = Invoice(
                id=self._last_invoice_id + 1,
                type="TaxInvoice",
                customer_id=owner,
                job=None,
                ex_tax=self._random_amount() if total_ex_tax is None else to_cents(total_ex_tax),
                amount_applied=0,
                stage="Approved",
                date_issued=build_date(now),
                date_modified=now,
                id_as_string=self._rng.random() < 0.05,
                customer_id_as_string=self._rng.random() < 0.05,
            )
            self._last_invoice_id = invoice.id
            self._store(invoice)
            self._emit("invoice", "created", invoice.id, now)
            return invoice.id

    def update_invoice(
        self,
        invoice_id: int,
        *,
        customer_id: int | Literal["keep"] | None = "keep",
        total_ex_tax: Decimal | None = None,
        stage: str | None = None,
    ) -> None:
        """Change an invoice's customer (None = no customer), total and/or Stage."""
        if stage is not None and stage not in INVOICE_STAGES:
            raise ValueError(f"stage must be one of {INVOICE_STAGES}, not {stage!r}")
        with self.lock:
            invoice = self._existing_invoice(invoice_id)
            moved = stage is not None and stage != invoice.stage
            now = self._now()
            if customer_id != "keep":
                owner = None if customer_id is None else self._existing_customer(customer_id)
                invoice = replace(invoice, customer_id=owner, job=None)
            if total_ex_tax is not None:
                invoice = invoice.with_total(to_cents(total_ex_tax), now)
            if stage is not None:
                invoice = replace(invoice, stage=stage)
            self._store(replace(invoice, date_modified=now))
            only = moved and customer_id == "keep" and total_ex_tax is None
            event = ChangeEvent(
                "invoice", "updated", invoice_id, now, stage if moved else None, only
            )
            self._notify(event)

    def add_work(self, kind: Literal["jobs", "quotes"], customer_id: int | None = None) -> int:
        """Create a job or a quote (they share one ID sequence) issued today; its ID."""
        with self.lock:
            owner = (
                self._rng.choice(sorted(self._customers))
                if customer_id is None
                else self._existing_customer(customer_id)
            )
            now = self._now()
            new_id = 1 + max(self._jobs.last_id(), self._quotes.last_id())
            item = WorkItem(
                id=new_id,
                description=f"New {kind[:-1]} {new_id}",
                customer_id=owner,
                ex_tax=self._random_amount(),
                stage="Pending",
                date_issued=build_date(now),
                date_modified=now,
            )
            (self._jobs if kind == "jobs" else self._quotes).add(item)
            self.tables[kind].put_index(item.id, item.date_modified)
            self._emit(kind[:-1], "created", new_id, now)
            return new_id

    def delete_invoice(self, invoice_id: int) -> None:
        # Simpro lists do not show deletions, even with If-Modified-Since: the record
        # is simply gone (webhooks are how a client learns about it).
        with self.lock:
            self._existing_invoice(invoice_id)
            self._invoices.delete(invoice_id)
            self.tables["invoices"].remove(invoice_id)
            self._emit("invoice", "deleted", invoice_id, self._now())

    # -- internals -----------------------------------------------------------------

    def _now(self) -> int:
        # Whole seconds: HTTP dates (If-Modified-Since, Date) have 1 s resolution.
        return int(self._clock())

    def _emit(self, resource: str, action: str, record_id: int, timestamp: int) -> None:
        self._notify(ChangeEvent(resource, action, record_id, timestamp))

    def _notify(self, event: ChangeEvent) -> None:
        for listener in list(self.listeners):
            listener(event)

    def _random_amount(self) -> int:
        return self._rng.randint(5_000, 500_000)  # cents

    def _existing_customer(self, customer_id: int) -> int:
        if customer_id not in self._customers:
            raise KeyError(f"customer {customer_id} not found")
        return customer_id

    def _existing_invoice(self, invoice_id: int) -> Invoice:
        if invoice_id not in self._invoices:
            raise KeyError(f"invoice {invoice_id} not found")
        return self._invoices.get(invoice_id)

    def _store(self, invoice: Invoice) -> None:
        self._invoices.put(invoice)
        self.tables["invoices"].put_index(invoice.id, invoice.date_modified)

    # Renderers of the tables: a Row from the records, when a page shows it.

    def _invoice_row(self, invoice_id: int) -> Row:
        invoice = self._invoices.get(invoice_id)
        summary, detail = self._render.invoice(invoice)
        return Row(invoice.id, invoice.date_modified, summary, detail)

    def _job_row(self, item_id: int) -> Row:
        return self._work_row(self._jobs.get(item_id))

    def _quote_row(self, item_id: int) -> Row:
        return self._work_row(self._quotes.get(item_id))

    def _work_row(self, item: WorkItem) -> Row:
        summary, detail = self._render.work(item)
        return Row(item.id, item.date_modified, summary, detail)

    def _customer_row(self, customer_id: int) -> Row:
        customer = self._customers[customer_id]
        summary, detail = self._render.customer(customer)
        return Row(customer.id, customer.date_modified, summary, detail, kind=customer.kind)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building the data set.

    Hundreds of thousands of new (acyclic) dicts trigger repeated full collections
    that would double generation time; nothing collectable is created meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_date(epoch_seconds: float) -> date:
    """The calendar day in the build's time zone at that instant."""
    return datetime.fromtimestamp(epoch_seconds, BUILD_TZ).date()
