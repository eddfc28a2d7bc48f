"""Invoices, jobs and quotes held column by column, in fixed-width arrays.

A million invoices as frozen dataclasses (with their ints, dates and job links) take
about a gigabyte; as columns of machine integers they take about 55 bytes each. A record
is materialised as its dataclass only when it is read (a page served, a test asking), and
a mutation writes the columns back. Rows stay sorted by ID, so finding one is a bisect.

Short strings that repeat (invoice types, stages, job descriptions) are stored as small
codes into a `Codes` table.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from datetime import date

from .records import Invoice, JobLink, WorkItem

NO_CUSTOMER = -1  # "no customer" / "no job" in an ID column (real IDs are positive)
_NONE = NO_CUSTOMER
_ID_AS_STRING = 1  # bits of InvoiceColumns.flags
_CUSTOMER_ID_AS_STRING = 2


class Codes:
    """A growing table of distinct strings, each known by its index."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        for name in names:
            self.code(name)

    def code(self, name: str) -> int:
        found = self._index.get(name)
        if found is None:
            found = self._index[name] = len(self._names)
            self._names.append(name)
        return found

    def name(self, code: int) -> str:
        return self._names[code]


class _Sorted:
    """The ID column and the bisect that finds a record's position."""

    def __init__(self) -> None:
        self.ids = array("q")

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, record_id: int) -> int:
        """Index of the record, or KeyError."""
        pos = bisect_left(self.ids, record_id)
        if pos == len(self.ids) or self.ids[pos] != record_id:
            raise KeyError(record_id)
        return pos

    def __contains__(self, record_id: object) -> bool:
        if not isinstance(record_id, int):
            return False
        pos = bisect_left(self.ids, record_id)
        return pos < len(self.ids) and self.ids[pos] == record_id

    def _slot(self, record_id: int) -> int:
        """Where a new ID goes: the end in the usual case (IDs come from a sequence)."""
        if not self.ids or record_id > self.ids[-1]:
            return len(self.ids)
        pos = bisect_left(self.ids, record_id)
        if pos < len(self.ids) and self.ids[pos] == record_id:
            raise ValueError(f"record {record_id} already exists")
        return pos


class InvoiceColumns(_Sorted):
    """Every invoice field as one array each; `job_description` names a linked job."""

    def __init__(self, job_description: Callable[[int], str]) -> None:
        super().__init__()
        self._job_description = job_description
        self.types = Codes(("TaxInvoice", "ProgressInvoice", "Deposit", "RequestForClaim"))
        self.stages = Codes(("Pending", "Approved"))
        self.type_codes = array("b")
        self.customers = array("q")  # _NONE: no customer
        self.jobs = array("q")  # _NONE: no job
        self.ex_tax = array("q")  # cents
        self.applied = array("q")  # cents
        self.stage_codes = array("b")
        self.issued = array("i")  # date.toordinal()
        self.modified = array("q")  # epoch seconds
        self.flags = array("b")
        self._columns: tuple[array[int], ...] = (
            self.ids,
            self.type_codes,
            self.customers,
            self.jobs,
            self.ex_tax,
            self.applied,
            self.stage_codes,
            self.issued,
            self.modified,
            self.flags,
        )

    def append_values(
        self,
        invoice_id: int,
        type_code: int,
        customer_id: int | None,
        job_id: int | None,
        ex_tax: int,
        applied: int,
        stage_code: int,
        issued: int,
        modified: int,
        flags: int,
    ) -> None:
        """Add an invoice whose ID is above every other (the generator's fast path)."""
        self.ids.append(invoice_id)
        self.type_codes.append(type_code)
        self.customers.append(_NONE if customer_id is None else customer_id)
        self.jobs.append(_NONE if job_id is None else job_id)
        self.ex_tax.append(ex_tax)
        self.applied.append(applied)
        self.stage_codes.append(stage_code)
        self.issued.append(issued)
        self.modified.append(modified)
        self.flags.append(flags)

    def put(self, invoice: Invoice) -> None:
        """Write an invoice, new or changed."""
        values = self._values(invoice)
        if invoice.id in self:
            pos = self.position(invoice.id)
            for column, value in zip(self._columns, values, strict=True):
                column[pos] = value
        else:
            pos = self._slot(invoice.id)
            for column, value in zip(self._columns, values, strict=True):
                column.insert(pos, value)

    def delete(self, invoice_id: int) -> None:
        pos = self.position(invoice_id)
        for column in self._columns:
            del column[pos]

    def get(self, invoice_id: int) -> Invoice:
        """The invoice as a value (KeyError when there is none)."""
        return self.at(self.position(invoice_id))

    def at(self, pos: int) -> Invoice:
        customer = self.customers[pos]
        job = self.jobs[pos]
        flags = self.flags[pos]
        return Invoice(
            id=self.ids[pos],
            type=self.types.name(self.type_codes[pos]),
            customer_id=None if customer == _NONE else customer,
            job=None if job == _NONE else JobLink(job, self._job_description(job)),
            ex_tax=self.ex_tax[pos],
            amount_applied=self.applied[pos],
            stage=self.stages.name(self.stage_codes[pos]),
            date_issued=date.fromordinal(self.issued[pos]),
            date_modified=self.modified[pos],
            id_as_string=bool(flags & _ID_AS_STRING),
            customer_id_as_string=bool(flags & _CUSTOMER_ID_AS_STRING),
        )

    def customer_ids(self) -> Sequence[int]:
        """The customer column; -1 where an invoice has none (see `NO_CUSTOMER`)."""
        return self.customers

    def _values(self, invoice: Invoice) -> tuple[int, ...]:
        flags = (_ID_AS_STRING if invoice.id_as_string else 0) | (
            _CUSTOMER_ID_AS_STRING if invoice.customer_id_as_string else 0
        )
        return (
            invoice.id,
            self.types.code(invoice.type),
            _NONE if invoice.customer_id is None else invoice.customer_id,
            _NONE if invoice.job is None else invoice.job.id,
            invoice.ex_tax,
            invoice.amount_applied,
            self.stages.code(invoice.stage),
            invoice.date_issued.toordinal(),
            invoice.date_modified,
            flags,
        )


class WorkColumns(_Sorted):
    """Jobs or quotes, one array per field; descriptions are codes (most repeat)."""

    def __init__(self, descriptions: Codes, stages: Codes) -> None:
        super().__init__()
        self.descriptions = descriptions
        self.stages = stages
        self.description_codes = array("i")
        self.customers = array("q")
        self.ex_tax = array("q")
        self.stage_codes = array("b")
        self.issued = array("i")
        self.modified = array("q")

    def append_values(
        self,
        item_id: int,
        description_code: int,
        customer_id: int,
        ex_tax: int,
        stage_code: int,
        issued: int,
        modified: int,
    ) -> None:
        self.ids.append(item_id)
        self.description_codes.append(description_code)
        self.customers.append(customer_id)
        self.ex_tax.append(ex_tax)
        self.stage_codes.append(stage_code)
        self.issued.append(issued)
        self.modified.append(modified)

    def add(self, item: WorkItem) -> None:
        """Add a new item; its ID must be above every other (one ID sequence)."""
        if self.ids and item.id <= self.ids[-1]:
            raise ValueError(f"work item {item.id} is not newer than {self.ids[-1]}")
        self.append_values(
            item.id,
            self.descriptions.code(item.description),
            item.customer_id,
            item.ex_tax,
            self.stages.code(item.stage),
            item.date_issued.toordinal(),
            item.date_modified,
        )

    def get(self, item_id: int) -> WorkItem:
        return self.at(self.position(item_id))

    def description(self, item_id: int) -> str:
        return self.descriptions.name(self.description_codes[self.position(item_id)])

    def at(self, pos: int) -> WorkItem:
        return WorkItem(
            id=self.ids[pos],
            description=self.descriptions.name(self.description_codes[pos]),
            customer_id=self.customers[pos],
            ex_tax=self.ex_tax[pos],
            stage=self.stages.name(self.stage_codes[pos]),
            date_issued=date.fromordinal(self.issued[pos]),
            date_modified=self.modified[pos],
        )

    def last_id(self) -> int:
        return self.ids[-1] if self.ids else 0
