"""What a counter is: which resource and columns it reads, and how records fold into a value.

Pure: nothing here does I/O. The scan feeds invoice records into an :class:`InvoiceFold`
(one pass serves every invoice-derived metric); counts Simpro reports in `Result-Total`
(jobs, quotes) need no fold at all. :func:`growth_history` turns each customer's first
invoice date into new/cumulative customers per month, quarter or year.
"""

from .definitions import (
    INVOICE_GROUP,
    METRICS,
    MetricDefinition,
    MetricKind,
    display_value,
    format_value,
    group_members,
    invoice_metric_values,
    invoice_metrics,
    refresh_group,
    refresh_groups,
    result_total_metrics,
    scan_columns,
)
from .history import HistoryPoint, Interval, growth_from_days, growth_history, period_of, to_csv
from .invoices import InvoiceEntry, InvoiceFilter, InvoiceFold

__all__ = [
    "INVOICE_GROUP",
    "METRICS",
    "HistoryPoint",
    "Interval",
    "InvoiceEntry",
    "InvoiceFilter",
    "InvoiceFold",
    "MetricDefinition",
    "MetricKind",
    "display_value",
    "format_value",
    "group_members",
    "growth_from_days",
    "growth_history",
    "invoice_metric_values",
    "invoice_metrics",
    "period_of",
    "refresh_group",
    "refresh_groups",
    "result_total_metrics",
    "scan_columns",
    "to_csv",
]
