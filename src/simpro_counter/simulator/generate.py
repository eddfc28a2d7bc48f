"""Seeded generation of a realistic Simpro data set.

Deterministic for given arguments: one `random.Random` drives everything, and all
dates are relative to `today` (the build's current day), which the caller passes in.

Records are written straight into columns (columns.py), never built as objects: a
million invoices take about 10 s and 0.4 GB. The draws keep the order they had when each
record was a dataclass, so a seed gives the same data set as it always did.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date

from .columns import Codes, InvoiceColumns, WorkColumns
from .records import BUILD_TZ, Customer, CustomerKind, gst_cents

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
    """A generated data set: customers as values, the rest in columns (see columns.py)."""

    customers: tuple[Customer, ...]
    invoices: InvoiceColumns
    jobs: WorkColumns
    quotes: WorkColumns


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_TZ_OFFSET = int(BUILD_TZ.utcoffset(None).total_seconds())


def midnight(day: date) -> int:
    """Epoch seconds of the day's start in the build's time zone (integer math: hot path)."""
    return (day.toordinal() - _EPOCH_ORDINAL) * _DAY - _TZ_OFFSET


class _Generator:
    """The random draws of a data set, in a fixed order (changing it changes every seed)."""

    def __init__(self, seed: int, today: date) -> None:
        self.rng = random.Random(f"simpro-dataset:{seed}")
        self.today = today
        self.today_ordinal = today.toordinal()
        # Nothing seeded is modified on or after today's midnight, so any cursor a
        # client gets from a response today is later than all seeded data.
        self.cutoff = midnight(today) - 1

    def ids(self, count: int, start: int, gap_chance: float) -> list[int]:
        """Increasing IDs from `start`, with occasional gaps (deleted records)."""
        out: list[int] = []
        next_id = start
        rng_random, rng_randint = self.rng.random, self.rng.randint
        for _ in range(count):
            out.append(next_id)
            next_id += 1
            if rng_random() < gap_chance:
                next_id += rng_randint(1, 5)
        return out

    def issue_days(self, count: int) -> list[int]:
        """Sorted day ordinals over the last YEARS years, busier recently (the business grew)."""
        span = YEARS * 365
        rng_random = self.rng.random
        # u ** 0.7 puts more mass near 1 (= today): density grows with time.
        days_back = sorted((1 - rng_random() ** 0.7) * span for _ in range(count))
        return [self.today_ordinal - (int(back) + 1) for back in reversed(days_back)]

    def modified_after(self, issued: int) -> int:
        """When a record issued on that day ordinal was last edited."""
        # Edited within hours or weeks of issue (payments, corrections), never after cutoff.
        delay = 8 * 3600 + int(self.rng.expovariate(1 / (4 * _DAY)))
        return min(_midnight_of(issued) + delay, self.cutoff)

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
        self,
        customers: list[int],
        cum: list[float],
        counts: tuple[int, int],
        into: tuple[WorkColumns, WorkColumns],
    ) -> dict[int, list[int]]:
        """Fill `into` (jobs, quotes) with `counts` items; returns each customer's job IDs."""
        # Jobs and quotes share one number sequence in Simpro.
        rng = self.rng
        jobs, quotes = into
        flags = [True] * counts[0] + [False] * counts[1]
        rng.shuffle(flags)
        ids = self.ids(len(flags), 1, 0.05)
        days = self.issue_days(len(flags))
        owners = rng.choices(customers, cum_weights=cum, k=len(flags)) if customers else []
        work_codes = [jobs.descriptions.code(name) for name in _WORK]
        job_stages = [jobs.stages.code(name) for name in _JOB_STAGES]
        quote_stages = [quotes.stages.code(name) for name in _QUOTE_STAGES]
        jobs_of: dict[int, list[int]] = {}
        for is_job, item_id, issued, owner in zip(flags, ids, days, owners, strict=True):
            # The draws in the order WorkItem's fields used to be built.
            description = rng.choice(work_codes)
            ex_tax = self.amount(1500.0)
            stage = rng.choice(job_stages if is_job else quote_stages)
            modified = self.modified_after(issued)
            target = jobs if is_job else quotes
            target.append_values(item_id, description, owner, ex_tax, stage, issued, modified)
            if is_job:
                jobs_of.setdefault(owner, []).append(item_id)
        return jobs_of

    def invoice(
        self,
        out: InvoiceColumns,
        invoice_id: int,
        issued: int,
        customer_id: int | None,
        job: int | None,
    ) -> None:
        rng = self.rng
        kind = rng.choice(_INVOICE_TYPES)
        ex_tax = self.amount(250.0 if kind == "Deposit" else 800.0)
        inc_tax = ex_tax + gst_cents(ex_tax)
        stage = "Pending" if rng.random() < 0.06 else "Approved"
        # Old invoices are almost all paid; recent ones often still open.
        paid_chance = 0.97 if self.today_ordinal - issued > 90 else 0.5
        applied = 0
        if stage == "Approved" and rng.random() < paid_chance:
            applied = inc_tax
        elif stage == "Approved" and rng.random() < 0.1:
            applied = inc_tax * rng.randint(10, 90) // 100
        modified = self.modified_after(issued)
        flags = (1 if rng.random() < 0.05 else 0) | (2 if rng.random() < 0.05 else 0)
        out.append_values(
            invoice_id,
            out.types.code(kind),
            customer_id,
            job,
            ex_tax,
            applied,
            out.stages.code(stage),
            issued,
            modified,
            flags,
        )


def _midnight_of(day_ordinal: int) -> int:
    return (day_ordinal - _EPOCH_ORDINAL) * _DAY - _TZ_OFFSET


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
    descriptions, stages = Codes(), Codes()
    jobs, quotes = WorkColumns(descriptions, stages), WorkColumns(descriptions, stages)
    counts = (round(1.3 * invoices / 2), round(invoices / 2))
    jobs_of = gen.work(customer_ids, cum, counts, (jobs, quotes))
    buyers = rng.choices(customer_ids, cum_weights=cum, k=invoices) if customer_ids else []
    out = InvoiceColumns(jobs.description)
    no_jobs: list[int] = []
    for invoice_id, issued, buyer in zip(
        gen.ids(invoices, 10001, 0.03), gen.issue_days(invoices), buyers, strict=True
    ):
        customer_id: int | None = None if rng.random() < 0.02 else buyer
        options = jobs_of.get(buyer, no_jobs) if customer_id is not None else no_jobs
        picked = rng.choice(options) if options and rng.random() < 0.9 else None
        gen.invoice(out, invoice_id, issued, customer_id, picked)
    return Records(people, out, jobs, quotes)
