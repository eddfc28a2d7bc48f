"""Seeded generation of a realistic Simpro data set.

Deterministic for given arguments: one `random.Random` drives everything, and all
dates are relative to `today` (the build's current day), which the caller passes in.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, timedelta

from .records import (
    BUILD_TZ,
    Customer,
    CustomerKind,
    Invoice,
    JobLink,
    WorkItem,
    gst_cents,
)

YEARS = 5
_DAY = 86_400

_PLACES = ["Harbour", "Summit", "Coastal", "Redgum", "Southern", "Bayside", "Northside",
           "Eastern", "Pioneer", "Golden", "Ironbark", "Riverside", "Kookaburra", "Outback",
           "Metro", "Sunset", "Wattle", "Granite", "Blue Gum", "Cedar"]  # fmt: skip
_TRADES = ["Electrical", "Plumbing", "Air Conditioning", "Fire Services", "Security",
           "Solar", "Refrigeration", "Data & Comms", "Maintenance", "Property",
           "Constructions", "Facilities", "Hospitality", "Retail", "Medical Centre"]  # fmt: skip
_SUFFIXES = ["Pty Ltd", "Pty Ltd", "Group", "Services", "& Co", "Holdings"]
_GIVEN = ["Olivia", "Jack", "Charlotte", "Noah", "Amelia", "William", "Isla", "Oliver",
          "Mia", "Thomas", "Grace", "James", "Chloe", "Lucas", "Ruby", "Henry", "Zoe",
          "Liam", "Sophie", "Ethan", "Priya", "Wei", "Aroha", "Mohammed"]  # fmt: skip
_FAMILY = ["Smith", "Jones", "Williams", "Brown", "Wilson", "Taylor", "Nguyen", "Johnson",
           "Martin", "White", "Anderson", "Walker", "Thompson", "Harris", "Lee", "Ryan",
           "Kelly", "King", "Campbell", "Chen", "Singh", "O'Brien", "Patel", "Murphy"]  # fmt: skip
_WORK = ["Switchboard upgrade", "Hot water system replacement", "Split system install",
         "Annual fire inspection", "CCTV installation", "Solar PV 6.6kW", "Blocked drain",
         "Cool room repair", "Data cabling fit-out", "Emergency lighting test",
         "Preventative maintenance", "Tenancy fit-out", "LED lighting retrofit",
         "Backflow prevention test", "Gas leak repair", "Ducted heating service"]  # fmt: skip
_INVOICE_TYPES = (
    (["TaxInvoice"] * 85)
    + (["ProgressInvoice"] * 7)
    + (["Deposit"] * 5)
    + (["RequestForClaim"] * 3)
)
_JOB_STAGES = ["Complete"] * 60 + ["Invoiced"] * 25 + ["Progress"] * 10 + ["Pending"] * 5
_QUOTE_STAGES = ["Approved"] * 35 + ["Complete"] * 30 + ["InProgress"] * 20 + ["Archived"] * 15


@dataclass(frozen=True)
class Records:
    customers: tuple[Customer, ...]
    invoices: tuple[Invoice, ...]
    jobs: tuple[WorkItem, ...]
    quotes: tuple[WorkItem, ...]


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_TZ_OFFSET = int(BUILD_TZ.utcoffset(None).total_seconds())


def midnight(day: date) -> int:
    """Epoch seconds of the day's start in the build's time zone (integer math: hot path)."""
    return (day.toordinal() - _EPOCH_ORDINAL) * _DAY - _TZ_OFFSET


class _Generator:
    def __init__(self, seed: int, today: date) -> None:
        self.rng = random.Random(f"simpro-dataset:{seed}")
        self.today = today
        # Nothing seeded is modified on or after today's midnight, so any cursor a
        # client gets from a response today is later than all seeded data.
        self.cutoff = midnight(today) - 1

    def ids(self, count: int, start: int, gap_chance: float) -> list[int]:
        """Increasing IDs from `start`, with occasional gaps (deleted records)."""
        out: list[int] = []
        next_id = start
        for _ in range(count):
            out.append(next_id)
            next_id += 1
            if self.rng.random() < gap_chance:
                next_id += self.rng.randint(1, 5)
        return out

    def issue_dates(self, count: int) -> list[date]:
        """Sorted dates over the last YEARS years, busier recently (the business grew)."""
        span = YEARS * 365
        # u ** 0.7 puts more mass near 1 (= today): density grows with time.
        days_back = sorted((1 - self.rng.random() ** 0.7) * span for _ in range(count))
        return [self.today - timedelta(days=int(back) + 1) for back in reversed(days_back)]

    def modified_after(self, issued: date) -> int:
        # Edited within hours or weeks of issue (payments, corrections), never after cutoff.
        delay = 8 * 3600 + int(self.rng.expovariate(1 / (4 * _DAY)))
        return min(midnight(issued) + delay, self.cutoff)

    def amount(self, median: float) -> int:
        """Cents, log-normal around `median` dollars: many small jobs, a few big ones."""
        value = math.exp(self.rng.gauss(math.log(median), 1.0))
        return max(100, round(value * 100))

    def customer(self, customer_id: int) -> Customer:
        rng = self.rng
        kind: CustomerKind = "company" if rng.random() < 0.6 else "individual"
        given, family = rng.choice(_GIVEN), rng.choice(_FAMILY)
        company = ""
        if kind == "company":
            company = f"{rng.choice(_PLACES)} {rng.choice(_TRADES)} {rng.choice(_SUFFIXES)}"
            email = f"accounts{customer_id}@example.com.au"
        else:
            email = f"{given}.{family}{customer_id}@example.com".lower().replace("'", "")
        return Customer(
            id=customer_id,
            kind=kind,
            company_name=company,
            given_name="" if kind == "company" else given,
            family_name="" if kind == "company" else family,
            email=email,
            phone=f"04{rng.randint(0, 99_999_999):08d}",
            date_modified=self.cutoff - rng.randint(0, YEARS * 365 * _DAY),
        )

    def weights(self, count: int) -> list[float]:
        """Zipf-like weights in random customer order; ~8% never buy anything."""
        ranks = list(range(1, count + 1))
        self.rng.shuffle(ranks)
        return [0.0 if self.rng.random() < 0.08 else 1.0 / rank for rank in ranks]

    def work(
        self, customers: list[int], cum: list[float], jobs: int, quotes: int
    ) -> tuple[list[WorkItem], list[WorkItem]]:
        # Jobs and quotes share one number sequence in Simpro.
        rng = self.rng
        flags = [True] * jobs + [False] * quotes
        rng.shuffle(flags)
        ids = self.ids(len(flags), 1, 0.05)
        dates = self.issue_dates(len(flags))
        owners = rng.choices(customers, cum_weights=cum, k=len(flags)) if customers else []
        out_jobs: list[WorkItem] = []
        out_quotes: list[WorkItem] = []
        for is_job, item_id, issued, owner in zip(flags, ids, dates, owners, strict=True):
            item = WorkItem(
                id=item_id,
                description=rng.choice(_WORK),
                customer_id=owner,
                ex_tax=self.amount(1500.0),
                stage=rng.choice(_JOB_STAGES if is_job else _QUOTE_STAGES),
                date_issued=issued,
                date_modified=self.modified_after(issued),
            )
            (out_jobs if is_job else out_quotes).append(item)
        return out_jobs, out_quotes

    def invoice(
        self, invoice_id: int, issued: date, customer_id: int | None, job: JobLink | None
    ) -> Invoice:
        rng = self.rng
        kind = rng.choice(_INVOICE_TYPES)
        ex_tax = self.amount(250.0 if kind == "Deposit" else 800.0)
        inc_tax = ex_tax + gst_cents(ex_tax)
        stage = "Pending" if rng.random() < 0.06 else "Approved"
        # Old invoices are almost all paid; recent ones often still open.
        paid_chance = 0.97 if (self.today - issued).days > 90 else 0.5
        applied = 0
        if stage == "Approved" and rng.random() < paid_chance:
            applied = inc_tax
        elif stage == "Approved" and rng.random() < 0.1:
            applied = inc_tax * rng.randint(10, 90) // 100
        return Invoice(
            id=invoice_id,
            type=kind,
            customer_id=customer_id,
            job=job,
            ex_tax=ex_tax,
            amount_applied=applied,
            stage=stage,
            date_issued=issued,
            date_modified=self.modified_after(issued),
            id_as_string=rng.random() < 0.05,
            customer_id_as_string=rng.random() < 0.05,
        )


def generate(*, invoices: int, customers: int, seed: int, today: date) -> Records:
    gen = _Generator(seed, today)
    rng = gen.rng
    customer_ids = gen.ids(customers, 1, 0.08)
    people = tuple(gen.customer(customer_id) for customer_id in customer_ids)
    cum: list[float] = []
    running = 0.0
    for weight in gen.weights(len(customer_ids)):
        running += weight
        cum.append(running)
    if customer_ids and running == 0.0:
        cum = [float(i + 1) for i in range(len(customer_ids))]  # nobody buys: fall back
    jobs, quotes = gen.work(customer_ids, cum, round(1.3 * invoices / 2), round(invoices / 2))
    jobs_of: dict[int, list[WorkItem]] = {}
    for job in jobs:
        jobs_of.setdefault(job.customer_id, []).append(job)
    buyers = rng.choices(customer_ids, cum_weights=cum, k=invoices) if customer_ids else []
    out: list[Invoice] = []
    for invoice_id, issued, buyer in zip(
        gen.ids(invoices, 10001, 0.03), gen.issue_dates(invoices), buyers, strict=True
    ):
        customer_id: int | None = None if rng.random() < 0.02 else buyer
        options = jobs_of.get(buyer, []) if customer_id is not None else []
        picked = rng.choice(options) if options and rng.random() < 0.9 else None
        link = None if picked is None else JobLink(picked.id, picked.description)
        out.append(gen.invoice(invoice_id, issued, customer_id, link))
    return Records(people, tuple(out), tuple(jobs), tuple(quotes))
