"""The ground truth a correct counter must report for a data set."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from .records import Customer, Invoice, from_cents


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
    invoices: Iterable[Invoice], customers: Iterable[Customer], jobs: int, quotes: int
) -> Truth:
    count = 0
    orphans = 0
    revenue = 0  # cents
    buyers: set[int] = set()
    for invoice in invoices:
        count += 1
        revenue += invoice.ex_tax
        if invoice.customer_id is None:
            orphans += 1
        else:
            buyers.add(invoice.customer_id)
    kinds = [customer.kind for customer in customers]
    return Truth(
        customers=len(buyers),
        invoices=count,
        invoices_without_customer=orphans,
        revenue=from_cents(revenue),
        jobs=jobs,
        quotes=quotes,
        companies=kinds.count("company"),
        individuals=kinds.count("individual"),
    )
