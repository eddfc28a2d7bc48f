"""The registry of counters: what each one reads from Simpro and how it folds.

Two ways a metric gets its value:

- folded from the invoice scan (`resource == "invoices"` and not `uses_result_total`):
  customers, invoices, revenue. One scan asks for the union of their columns
  (:func:`scan_columns`) and an :class:`~simpro_counter.metrics.InvoiceFold` computes
  all of them in the same pass;
- read from `Result-Total` (`uses_result_total`): jobs, quotes. One request with
  `pageSize=1` costs the same whatever the size of the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

MetricKind = Literal["distinct", "count", "sum"]

INVOICES = "invoices"

# Columns the invoice scan needs beyond what the metrics themselves read:
# DateIssued for customer growth history, Type and Stage for InvoiceFilter.
HISTORY_COLUMNS: tuple[str, ...] = ("DateIssued",)
FILTER_COLUMNS: tuple[str, ...] = ("Type", "Stage")


@dataclass(frozen=True)
class MetricDefinition:
    """One counter: its source, the columns it needs and how records become its value."""

    name: str
    resource: str
    """The company-scoped list it reads (`invoices` → `companies/{id}/invoices/`)."""
    columns: tuple[str, ...]
    """The columns it needs from each record (always including `ID`)."""
    kind: MetricKind
    """distinct: distinct values of a field; count: number of records; sum: total of a field."""
    unit: str
    """What one unit of the value is: "customers", "invoices", ... or a currency ("AUD")."""
    decimals: int
    """Decimal places of the value: 0 for counts, 2 for money (cents)."""
    description: str
    uses_result_total: bool
    """True: the value is Simpro's `Result-Total` for the list (one request, no scan)."""

    @property
    def folded_from_invoices(self) -> bool:
        return self.resource == INVOICES and not self.uses_result_total

    def format(self, value: int | Decimal) -> str:
        """The value as a string with exactly `decimals` places (never via float)."""
        if self.decimals == 0:
            if isinstance(value, Decimal) and value != value.to_integral_value():
                raise ValueError(f"{self.name} is a whole number, got {value}")
            return str(int(value))
        exponent = Decimal(1).scaleb(-self.decimals)
        return str(Decimal(value).quantize(exponent))

    def from_stored(self, stored: int) -> int | Decimal:
        """The value from its stored integer, which counts the smallest unit (cents)."""
        if self.decimals == 0:
            return stored
        return Decimal(stored).scaleb(-self.decimals)


METRICS: dict[str, MetricDefinition] = {
    definition.name: definition
    for definition in (
        MetricDefinition(
            name="customers",
            resource=INVOICES,
            columns=("ID", "Customer"),
            kind="distinct",
            unit="customers",
            decimals=0,
            description="Distinct customers ever invoiced (invoices without a customer ignored).",
            uses_result_total=False,
        ),
        MetricDefinition(
            name="invoices",
            resource=INVOICES,
            columns=("ID",),
            kind="count",
            unit="invoices",
            decimals=0,
            description="Invoices counted (distinct invoice IDs that pass the invoice filter).",
            uses_result_total=False,
        ),
        MetricDefinition(
            name="revenue",
            resource=INVOICES,
            columns=("ID", "Total"),
            kind="sum",
            unit="AUD",
            decimals=2,
            description="Sum of Total.ExTax over the invoices counted, exact to the cent.",
            uses_result_total=False,
        ),
        MetricDefinition(
            name="jobs",
            resource="jobs",
            columns=("ID",),
            kind="count",
            unit="jobs",
            decimals=0,
            description="Jobs, as Simpro reports in Result-Total.",
            uses_result_total=True,
        ),
        MetricDefinition(
            name="quotes",
            resource="quotes",
            columns=("ID",),
            kind="count",
            unit="quotes",
            decimals=0,
            description="Quotes, as Simpro reports in Result-Total.",
            uses_result_total=True,
        ),
    )
}


def format_value(metric: str, stored: int) -> str:
    """A stored value as text: `"1234"` for counts, `"1234.50"` for revenue (cents 123450)."""
    definition = METRICS[metric]
    return definition.format(definition.from_stored(stored))


def display_value(metric: str, stored: int) -> str:
    """A stored value for people: `"12,345"`, or `"1,234.50"` for revenue (thousands
    separated, exact: Decimal formatting, never a float)."""
    definition = METRICS[metric]
    if definition.decimals == 0:
        return f"{stored:,}"
    return f"{Decimal(stored).scaleb(-definition.decimals):,.{definition.decimals}f}"


# The invoice metrics are refreshed together, under the lock (and status) of this one:
# `customers`, whose lock key is the original deployment's.
INVOICE_GROUP = "customers"


def refresh_group(metric: str) -> str:
    """The metric whose refresh computes `metric` (and whose lock it runs under)."""
    return INVOICE_GROUP if METRICS[metric].folded_from_invoices else metric


def refresh_groups() -> tuple[str, ...]:
    """One metric per refresh that keeps every metric current: customers, jobs, quotes."""
    return tuple(dict.fromkeys(refresh_group(name) for name in METRICS))


def group_members(group: str) -> tuple[str, ...]:
    """The metrics one refresh of `group` publishes, the group's own first."""
    return (group, *(name for name in METRICS if name != group and refresh_group(name) == group))


def invoice_metrics() -> tuple[MetricDefinition, ...]:
    """The metrics one invoice scan computes together, in registry order."""
    return tuple(m for m in METRICS.values() if m.folded_from_invoices)


def invoice_metric_values(*, distinct: int, count: int, total: int) -> dict[str, int]:
    """The value of each invoice metric by its kind: `distinct` customers, the `count` of
    invoices, the `total` of revenue (in cents), keyed by the registry's names, so that a
    scan's or the ledger's figures never spell a metric's name themselves."""
    by_kind: dict[MetricKind, int] = {"distinct": distinct, "count": count, "sum": total}
    return {metric.name: by_kind[metric.kind] for metric in invoice_metrics()}


def result_total_metrics() -> tuple[MetricDefinition, ...]:
    """The metrics read from `Result-Total` for one request each."""
    return tuple(m for m in METRICS.values() if m.uses_result_total)


def scan_columns() -> tuple[str, ...]:
    """Every column the invoice scan must ask for, `ID` first, without duplicates.

    The union of the invoice metrics' columns, plus `DateIssued` (growth history) and
    `Type`, `Stage` (the invoice filter).
    """
    columns: dict[str, None] = {"ID": None}
    for metric in invoice_metrics():
        columns.update(dict.fromkeys(metric.columns))
    columns.update(dict.fromkeys(HISTORY_COLUMNS + FILTER_COLUMNS))
    return tuple(columns)
