"""Simpro records as immutable values, and their JSON-ready rendering.

Records keep exact values (money in integer cents, int IDs, epoch seconds);
rendering turns them into the dicts Simpro would send, including its quirks (IDs as
strings, floats for money, local time with an offset).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

CustomerKind = Literal["company", "individual"]
JsonDict = dict[str, object]

# Simpro builds answer in the build's local time; Brisbane has no daylight saving,
# so a fixed +10:00 offset is both realistic and deterministic.
BUILD_TZ = timezone(timedelta(hours=10))
CENT = Decimal("0.01")

INVOICE_FIELDS = frozenset(
    {
        "ID",
        "InternalID",
        "Type",
        "Customer",
        "Jobs",
        "Total",
        "IsPaid",
        "DateIssued",
        "DateModified",
        "Stage",
        "Status",
        "RecurringInvoice",
    }
)
COMPANY_CUSTOMER_FIELDS = frozenset({"ID", "CompanyName", "Email", "Phone", "DateModified"})
INDIVIDUAL_CUSTOMER_FIELDS = frozenset(
    {"ID", "GivenName", "FamilyName", "Email", "Phone", "DateModified"}
)
CUSTOMER_FIELDS = COMPANY_CUSTOMER_FIELDS | INDIVIDUAL_CUSTOMER_FIELDS
WORK_FIELDS = frozenset(
    {"ID", "Description", "Total", "Customer", "Stage", "DateIssued", "DateModified"}
)
COMPANY_FIELDS = frozenset({"ID", "Name"})


# An invoice has two numbers (SIMPRO.md): `ID`, "an invoice number", the one the API's
# invoices/{id} takes, and `InternalID`, "used in Simpro URL". The simulator derives the
# second from the first, far above any ID, so mixing them up finds no record at all.
INTERNAL_ID_OFFSET = 500_000_000
# Every RECURRING_EVERY-th invoice (by ID) was raised by one of RECURRING_TEMPLATES
# recurring invoices; the others have RecurringInvoice null.
RECURRING_EVERY = 25
RECURRING_TEMPLATES = 12


def internal_id(invoice_id: int) -> int:
    """The InternalID of the invoice whose ID is `invoice_id`."""
    return INTERNAL_ID_OFFSET + invoice_id


def to_cents(value: Decimal) -> int:
    """Whole cents, rounded the way an accounting system does (half up)."""
    return int(value.quantize(CENT, rounding=ROUND_HALF_UP).scaleb(2))


def from_cents(amount: int) -> Decimal:
    # quantize keeps two places even for zero (scaleb alone gives Decimal("0E-2")).
    return Decimal(amount).scaleb(-2).quantize(CENT)


def gst_cents(ex_tax: int) -> int:
    """10% GST rounded half up (away from zero), in integer arithmetic for speed."""
    if ex_tax >= 0:
        return (ex_tax + 5) // 10
    return -((5 - ex_tax) // 10)


def rfc3339(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, BUILD_TZ).isoformat()


def money(amount: int) -> float:
    # Simpro sends money as JSON numbers. cents / 100 is the double nearest to the
    # 2-place value and repr()s back to its digits, so a client parsing with Decimal
    # gets exact cents.
    return amount / 100


@dataclass(frozen=True)
class Customer:
    id: int
    kind: CustomerKind
    company_name: str
    given_name: str
    family_name: str
    email: str
    phone: str
    date_modified: int  # epoch seconds


@dataclass(frozen=True)
class WorkItem:
    """A job or a quote: Simpro gives both the same shape."""

    id: int
    description: str
    customer_id: int
    ex_tax: int  # cents
    stage: str
    date_issued: date
    date_modified: int


@dataclass(frozen=True)
class JobLink:
    """The job an invoice bills; its line total is the invoice total."""

    id: int
    description: str


@dataclass(frozen=True)
class Invoice:
    id: int
    type: str
    customer_id: int | None
    job: JobLink | None
    ex_tax: int  # cents, like every amount here
    amount_applied: int
    stage: str
    date_issued: date
    date_modified: int
    id_as_string: bool  # render "ID" as "10005" instead of 10005
    customer_id_as_string: bool  # same quirk for Customer.ID

    @property
    def inc_tax(self) -> int:
        return self.ex_tax + gst_cents(self.ex_tax)

    @property
    def is_paid(self) -> bool:
        return self.inc_tax - self.amount_applied <= 0

    def with_total(self, ex_tax: int, modified: int) -> Invoice:
        # A paid invoice stays paid when re-priced; an unpaid one keeps what was applied.
        inc_tax = ex_tax + gst_cents(ex_tax)
        applied = inc_tax if self.is_paid else min(self.amount_applied, max(inc_tax, 0))
        return replace(self, ex_tax=ex_tax, amount_applied=applied, date_modified=modified)


# Simpro statuses are per-build codes; these are derived from the invoice's state.
# Rendered records share these dicts (and customer refs): nothing mutates them.
_PENDING: JsonDict = {"ID": 1, "Name": "Pending Approval"}
_SENT: JsonDict = {"ID": 2, "Name": "Sent to Customer"}
_PART_PAID: JsonDict = {"ID": 3, "Name": "Part Paid"}
_PAID: JsonDict = {"ID": 4, "Name": "Paid"}


def _status(stage: str, balance_due: int, applied: int) -> JsonDict:
    if stage == "Pending":
        return _PENDING
    if balance_due <= 0:
        return _PAID
    return _PART_PAID if applied > 0 else _SENT


def _short_total(ex_tax: int) -> JsonDict:
    tax = gst_cents(ex_tax)
    return {"ExTax": money(ex_tax), "Tax": money(tax), "IncTax": money(ex_tax + tax)}


class Renderer:
    """Turns records into (list item, full record) dicts as Simpro would send them.

    Customer references are built once per customer and shared, which keeps
    rendering 25,000 invoices well under a second.
    """

    def __init__(self, customers: Mapping[int, Customer]) -> None:
        self._customers = customers
        self._refs: dict[tuple[int, bool], JsonDict] = {}
        self._recurring: list[JsonDict] = [{"ID": n} for n in range(1, RECURRING_TEMPLATES + 1)]

    def recurring_ref(self, invoice_id: int) -> JsonDict | None:
        """The recurring invoice that raised this one, or None (most invoices)."""
        if invoice_id % RECURRING_EVERY:
            return None
        return self._recurring[invoice_id // RECURRING_EVERY % RECURRING_TEMPLATES]

    def customer_ref(self, customer_id: int, id_as_string: bool = False) -> JsonDict:
        ref = self._refs.get((customer_id, id_as_string))
        if ref is None:
            customer = self._customers[customer_id]
            ref = {"ID": str(customer_id) if id_as_string else customer_id}
            if customer.kind == "company":
                ref["CompanyName"] = customer.company_name
            else:
                ref["GivenName"] = customer.given_name
                ref["FamilyName"] = customer.family_name
            self._refs[(customer_id, id_as_string)] = ref
        return ref

    def customer(self, customer: Customer) -> tuple[JsonDict, JsonDict]:
        summary = dict(self.customer_ref(customer.id))
        detail = {
            **summary,
            "Email": customer.email,
            "Phone": customer.phone,
            "DateModified": rfc3339(customer.date_modified),
        }
        return summary, detail

    def work(self, item: WorkItem) -> tuple[JsonDict, JsonDict]:
        summary: JsonDict = {
            "ID": item.id,
            "Description": item.description,
            "Total": _short_total(item.ex_tax),
        }
        detail = {
            **summary,
            "Customer": self.customer_ref(item.customer_id),
            "Stage": item.stage,
            "DateIssued": item.date_issued.isoformat(),
            "DateModified": rfc3339(item.date_modified),
        }
        return summary, detail

    def invoice(self, invoice: Invoice) -> tuple[JsonDict, JsonDict]:
        ex_tax = invoice.ex_tax
        tax = gst_cents(ex_tax)
        balance = ex_tax + tax - invoice.amount_applied
        short: JsonDict = {"ExTax": money(ex_tax), "Tax": money(tax), "IncTax": money(ex_tax + tax)}
        job = invoice.job
        customer_id = invoice.customer_id
        summary: JsonDict = {
            "ID": str(invoice.id) if invoice.id_as_string else invoice.id,
            "Type": invoice.type,
            "Customer": None
            if customer_id is None
            else self.customer_ref(customer_id, invoice.customer_id_as_string),
            "Jobs": []
            if job is None
            else [{"ID": job.id, "Description": job.description, "Total": short}],
            "Total": {
                **short,
                # Reverse-charge GST is accounted for by the buyer: zero on these sales.
                "ReverseChargeTax": 0.0,
                "AmountApplied": money(invoice.amount_applied),
                "BalanceDue": money(balance),
            },
            "IsPaid": balance <= 0,
        }
        detail = {
            **summary,
            "InternalID": internal_id(invoice.id),
            "DateIssued": invoice.date_issued.isoformat(),
            "DateModified": rfc3339(invoice.date_modified),
            "Stage": invoice.stage,
            "Status": _status(invoice.stage, balance, invoice.amount_applied),
            "RecurringInvoice": self.recurring_ref(invoice.id),
        }
        return summary, detail


def pick(doc: Mapping[str, object], fields: tuple[str, ...]) -> JsonDict:
    """Project a rendered record onto some of its fields, in the order asked."""
    return {name: doc[name] for name in fields if name in doc}
