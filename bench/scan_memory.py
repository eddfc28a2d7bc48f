"""Benchmark: the memory a full scan's invoice fold needs, compact columns against the dict.

Each measurement runs in a fresh subprocess that imports what `simpro-counter refresh`
imports (its baseline), then folds invoice records shaped like the simulator's (the scan's
columns: ID, Type, Customer with a name, Total with five amounts, DateIssued, Stage; 5% of
IDs as strings; 2% without customer), in pages of 250 decoded from JSON as the client
decodes them, in the order a scan reads them: page 1, the page of newest invoices (by
-ID), then every page between. Customers: one per 20 invoices. It measures

- `rss`: the process's resident set before folding (baseline) and its peak (`VmHWM`)
  after folding, iterating `counted()` (what the ledger rebuild reads) and the scan's
  completeness check (`count_above()`; with the dict fold, `ids()` as the scan did
  before); then the peak had the scan copied every ID out with `ids()` (free for the dict
  fold, whose list reuses the dict's key objects; a new int per invoice for the columns);
- `trace`: tracemalloc's bytes held by the fold after folding and the peak during it
  (tracemalloc slows Python down, so it runs at the smaller sizes only).

The fold is measured alone: the HTTP client's buffers and the simulator are not in the
process (a scan through the built-in simulator at 300,000 invoices is dominated by the
simulator itself; see `bench/scale.py` for the end-to-end figure).

Run: `.venv/bin/python -m bench.scan_memory [--record] [--sizes 10000,100000,...]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from bench.record import record

PAGE = 250
CUSTOMERS_EVERY = 20  # invoices per customer on average
FIRST_DAY = date(2018, 1, 1)
TRACE_UP_TO = 300_000  # tracemalloc makes the dict fold slow beyond this
TARGET_BYTES = 100  # per invoice above the baseline
TARGET_PEAK_MB_300K = 140


class Fold(Protocol):
    def add(self, record: Any, where: str = ...) -> bool: ...
    def invoices(self) -> int: ...
    def customers(self) -> int: ...
    def counted(self) -> Iterable[tuple[int, Any]]: ...
    def ids(self) -> list[int]: ...


def page_of(first: int, count: int) -> list[dict[str, object]]:
    """`count` invoice records from ID `first` on, as the simulator renders them."""
    records: list[dict[str, object]] = []
    customers = max(1, (first + count) // CUSTOMERS_EVERY)
    for invoice_id in range(first, first + count):
        cents = invoice_id * 7919 % 1_000_000 + 1000
        customer = 10_000 + invoice_id * 31 % customers
        records.append(
            {
                "ID": str(invoice_id) if invoice_id % 20 == 0 else invoice_id,
                "Type": "TaxInvoice",
                "Customer": None
                if invoice_id % 50 == 0
                else {"ID": customer, "CompanyName": f"Company {customer}"},
                "Total": {
                    "ExTax": cents / 100,
                    "Tax": cents / 1000,
                    "IncTax": cents * 11 / 1000,
                    "AmountApplied": 0.0,
                    "BalanceDue": cents * 11 / 1000,
                },
                "DateIssued": (FIRST_DAY + timedelta(days=invoice_id % 2500)).isoformat(),
                "Stage": "Approved",
            }
        )
    return records


def scan_pages(invoices: int) -> Iterator[list[dict[str, Any]]]:
    """Pages decoded from JSON, in a scan's order: first, newest (by -ID), between."""
    starts = list(range(1, invoices + 1, PAGE))
    order = [starts[0], *([starts[-1]] if len(starts) > 1 else []), *starts[1:-1]]
    for number, start in enumerate(order):
        page = page_of(start, min(PAGE, invoices + 1 - start))
        if number == 1:
            page.reverse()
        yield json.loads(json.dumps(page))


def new_fold(kind: str) -> Fold:
    if kind == "dict":
        from bench.dict_fold import DictInvoiceFold

        return DictInvoiceFold()
    from simpro_counter.metrics import InvoiceFold

    return InvoiceFold()


def memory_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(kind: str, invoices: int, mode: str) -> dict[str, float]:
    """One measurement, in this (fresh) process; printed as JSON by `main`."""
    import simpro_counter.cli
    import simpro_counter.scan

    del simpro_counter
    fold = new_fold(kind)
    if mode == "trace":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for page in scan_pages(invoices):
            for item in page:
                fold.add(item)
        del page, item
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return {"held": (held - before) / invoices, "peak": (peak - before) / invoices}
    baseline = memory_kb("VmRSS")
    started = time.perf_counter()
    for page in scan_pages(invoices):
        for item in page:
            fold.add(item)
    seconds = time.perf_counter() - started
    del page, item
    folded = memory_kb("VmHWM")
    cents = sum(entry[1] for _, entry in fold.counted())
    iterated = memory_kb("VmHWM")
    if kind == "dict":
        above = sum(1 for i in fold.ids() if i > invoices // 2)
    else:
        from simpro_counter.metrics import InvoiceFold

        assert isinstance(fold, InvoiceFold)
        above = fold.count_above(invoices // 2)
    checked = memory_kb("VmHWM")
    copied = sum(1 for i in fold.ids() if i > invoices // 2)  # what the scan did before
    assert fold.invoices() == invoices
    assert cents > 0
    assert above == copied
    return {
        "baseline_mb": baseline / 1024,
        "folded_mb": folded / 1024,
        "iterated_mb": iterated / 1024,
        "checked_mb": checked / 1024,
        "ids_mb": memory_kb("VmHWM") / 1024,
        "seconds": seconds,
        "customers": fold.customers(),
    }


def measure(kind: str, invoices: int, mode: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.scan_memory", "--child", kind, str(invoices), mode],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


@dataclass(frozen=True)
class Row:
    invoices: int
    rss: dict[str, dict[str, float]]  # fold kind -> figures
    trace: dict[str, dict[str, float]] | None


def per_invoice(figures: dict[str, float], invoices: int) -> float:
    return (figures["checked_mb"] - figures["baseline_mb"]) * 2**20 / invoices


def report(rows: list[Row]) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        f"Measured {now} on {platform.machine()}, Python {platform.python_version()}: "
        f"records shaped like the simulator's in pages of {PAGE} decoded from JSON, "
        f"one customer per {CUSTOMERS_EVERY} invoices, in a scan's page order; each figure "
        "from a fresh process that imports what `simpro-counter refresh` imports.",
        "",
        "| invoices | fold | baseline RSS | peak RSS | above baseline per invoice "
        "| tracemalloc held / peak per invoice | peak RSS had the scan copied `ids()` "
        "| fold seconds |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for kind in ("compact", "dict"):
            figures = row.rss[kind]
            traced = "-"
            if row.trace is not None:
                t = row.trace[kind]
                traced = f"{t['held']:.0f} B / {t['peak']:.0f} B"
            lines.append(
                f"| {row.invoices:,} | {kind} | {figures['baseline_mb']:.1f} MB "
                f"| {figures['checked_mb']:.1f} MB | {per_invoice(figures, row.invoices):.0f} B "
                f"| {traced} | {figures['ids_mb']:.1f} MB | {figures['seconds']:.2f} |"
            )
    lines.append("")
    for row in rows:
        compact, old = row.rss["compact"], row.rss["dict"]
        ratio = per_invoice(old, row.invoices) / per_invoice(compact, row.invoices)
        lines.append(
            f"- {row.invoices:,} invoices: the compact fold needs **{ratio:.1f} times less** "
            f"memory above the baseline than the dict fold "
            f"(peak {compact['checked_mb']:.0f} MB against {old['checked_mb']:.0f} MB)."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="write docs/performance.md")
    parser.add_argument("--sizes", default="10000,100000,300000,1000000")
    parser.add_argument("--child", nargs=3, metavar=("FOLD", "INVOICES", "MODE"))
    args = parser.parse_args()
    if args.child:
        kind, invoices, mode = args.child
        print(json.dumps(child(kind, int(invoices), mode)))
        return
    rows: list[Row] = []
    for invoices in (int(size) for size in args.sizes.split(",")):
        rss = {kind: measure(kind, invoices, "rss") for kind in ("compact", "dict")}
        trace = None
        if invoices <= TRACE_UP_TO:
            trace = {kind: measure(kind, invoices, "trace") for kind in ("compact", "dict")}
        rows.append(Row(invoices, rss, trace))
        print(f"{invoices:,}: {rss} {trace}", file=sys.stderr, flush=True)
    text = report(rows)
    print(text)
    for row in rows:
        compact = row.rss["compact"]
        if row.invoices >= 100_000 and per_invoice(compact, row.invoices) > TARGET_BYTES:
            print(f"over the target of {TARGET_BYTES} B/invoice at {row.invoices:,}")
        if row.invoices == 300_000 and compact["checked_mb"] > TARGET_PEAK_MB_300K:
            print(f"over the target of {TARGET_PEAK_MB_300K} MB peak at 300,000")
    if args.record:
        record("bench/scan_memory.py", text)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
