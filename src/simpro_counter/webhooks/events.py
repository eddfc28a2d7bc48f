"""The Simpro webhook event names, listed once for the receiver, subscriptions and simulator.

An event is `<family>.<action>`, e.g. `invoice.created`, `company.customer.deleted` or
`invoice.stage.approved` (family `invoice`, action `stage.approved`): :func:`split_event`.
A subscription asks for :data:`COUNTED_EVENTS`, the receiver queues :data:`APPLIED_EVENTS`
(any other correctly signed event is acknowledged and dropped: Simpro's retry and
disable policy for failed deliveries is unpublished), and the simulator offers
:data:`KNOWN_EVENTS` and delivers the same names.

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

# An invoice moving into or out of a stage (Simpro's Swagger lists these two). With
# INVOICE_STAGES set they move invoices in and out of the count.
STAGE_EVENTS: tuple[str, ...] = ("invoice.stage.approved", "invoice.stage.pending")

# Every change to an invoice: it moves customers, invoices, revenue and the growth history.
INVOICE_EVENTS: tuple[str, ...] = (
    *(f"invoice.{action}" for action in RECORD_ACTIONS),
    "invoice.status",  # a status change (not a stage change): the record may have moved
    *STAGE_EVENTS,
)
# Every event this service knows the reference of, in the order the simulator lists them.
KNOWN_EVENTS: tuple[str, ...] = (
    *(f"{family}.{action}" for family in ID_KEYS for action in RECORD_ACTIONS),
    "invoice.status",
    *STAGE_EVENTS,
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
# What the receiver queues for the worker: every invoice event, and every job and quote
# event (a recount; a subscription may ask for updates too). Customer events and events
# this service does not know are acknowledged and not queued.
APPLIED_EVENTS: tuple[str, ...] = (
    *INVOICE_EVENTS,
    *(f"{family}.{action}" for family in ("job", "quote") for action in RECORD_ACTIONS),
)

# Longest family first, so `company.customer.created` is not read as family `company`.
_FAMILIES = sorted(ID_KEYS, key=len, reverse=True)


def split_event(event: str) -> tuple[str, str] | None:
    """`(family, action)` of a known family's event, e.g. `("invoice", "stage.approved")`;
    None for an event of a family this service does not know."""
    for family in _FAMILIES:
        if event.startswith(f"{family}.") and len(event) > len(family) + 1:
            return family, event[len(family) + 1 :]
    return None
