"""The ground truth a correct counter must report for a data set."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from .columns import NO_CUSTOMER
from .records import Customer, from_cents


@dataclass(frozen=True)
class Truth:
    customers: int  # distinct customer IDs over invoices of the first company
    invoices: int
    invoices_without_customer: int
    revenue: Decimal  # sum of Total.ExTax over those invoices, exact
    jobs: int
    quotes: int
    companies: int  # company customers
    individuals: int  # individual customers

    def as_json(self) -> dict[str, object]:
        return {
            "customers": self.customers,
            "invoices": self.invoices,
            "invoicesWithoutCustomer": self.invoices_without_customer,
            "revenue": str(self.revenue),  # a string: JSON numbers would lose exactness
            "jobs": self.jobs,
            "quotes": self.quotes,
            "companies": self.companies,
            "individuals": self.individuals,
        }


def compute_truth(
    invoice_customers: Sequence[int],
    invoice_ex_tax: Iterable[int],
    customers: Iterable[Customer],
    jobs: int,
    quotes: int,
) -> Truth:
    """Truth from the invoice columns: each invoice's customer (NO_CUSTOMER when it has
    none) and ex-tax cents, in the same order. Whole-column operations (set, sum,
    count) keep this to milliseconds at a million invoices."""
    buyers = set(invoice_customers)
    orphans = invoice_customers.count(NO_CUSTOMER)
    buyers.discard(NO_CUSTOMER)
    kinds = [customer.kind for customer in customers]
    return Truth(
        customers=len(buyers),
        invoices=len(invoice_customers),
        invoices_without_customer=orphans,
        revenue=from_cents(sum(invoice_ex_tax)),
        jobs=jobs,
        quotes=quotes,
        companies=kinds.count("company"),
        individuals=kinds.count("individual"),
    )
