"""The Simpro webhook event names, listed once for the receiver, subscriptions and simulator.

An event is `<family>.<action>`, e.g. `invoice.created` or `company.customer.deleted`.
The receiver accepts :data:`KNOWN_EVENTS` (any other answers 422), a subscription asks
for :data:`COUNTED_EVENTS`, and the simulator offers and delivers the same names.

This module imports nothing, so the simulator can use it without loading the service.
"""

from __future__ import annotations

# Event family -> the key in a delivery's `reference` that holds the record's ID.
ID_KEYS: dict[str, str] = {
    "invoice": "invoiceID",
    "job": "jobID",
    "quote": "quoteID",
    "company.customer": "customerID",
    "individual.customer": "customerID",
}
RECORD_ACTIONS = ("created", "updated", "deleted")

# Every change to an invoice: it moves customers, invoices, revenue and the growth history.
INVOICE_EVENTS: tuple[str, ...] = (
    *(f"invoice.{action}" for action in RECORD_ACTIONS),
    "invoice.status",  # a stage change, which INVOICE_STAGES may count or not
)
# A change of an invoice's Stage has events of its own (SIMPRO.md), besides invoice.status.
INVOICE_STAGE_EVENTS: tuple[str, ...] = ("invoice.stage.approved", "invoice.stage.pending")
# Every event this service understands, in the order the simulator lists them.
KNOWN_EVENTS: tuple[str, ...] = (
    *(f"{family}.{action}" for family in ID_KEYS for action in RECORD_ACTIONS),
    "invoice.status",
)
# What keeps the counters current: every change to an invoice, and jobs and quotes
# created or deleted (their counts). Customer events change no metric: customers are
# counted by invoice.
COUNTED_EVENTS: tuple[str, ...] = (
    *INVOICE_EVENTS,
    "job.created",
    "job.deleted",
    "quote.created",
    "quote.deleted",
)
