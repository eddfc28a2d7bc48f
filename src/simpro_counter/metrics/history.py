"""Customer growth: new customers per month, quarter or year, and the running total.

A customer is new in the period of its first invoice (see
:meth:`~simpro_counter.metrics.InvoiceFold.first_invoice_date_by_customer`). Periods are
contiguous from the first customer's period to the last one's: a period with no new
customer is listed with `new=0`, so a chart's x-axis has no gaps.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

Interval = Literal["month", "quarter", "year"]
INTERVALS: tuple[Interval, ...] = ("month", "quarter", "year")


@dataclass(frozen=True)
class HistoryPoint:
    period: str
    """"2024-03" (month), "2024-Q1" (quarter) or "2024" (year)."""
    new: int
    """Customers whose first invoice falls in this period."""
    cumulative: int
    """Customers whose first invoice falls in this period or before."""


def _index(day: date, interval: Interval) -> int:
    """A period as a number, consecutive periods being consecutive numbers."""
    if interval == "month":
        return day.year * 12 + day.month - 1
    if interval == "quarter":
        return day.year * 4 + (day.month - 1) // 3
    if interval == "year":
        return day.year
    raise ValueError(f"interval must be one of {INTERVALS}, not {interval!r}")


def _label(index: int, interval: Interval) -> str:
    if interval == "month":
        year, month = divmod(index, 12)
        return f"{year:04d}-{month + 1:02d}"
    if interval == "quarter":
        year, quarter = divmod(index, 4)
        return f"{year:04d}-Q{quarter + 1}"
    return f"{index:04d}"


def period_of(day: date, interval: Interval) -> str:
    """The label of the period holding `day`: "2024-03", "2024-Q1" or "2024"."""
    return _label(_index(day, interval), interval)


def growth_history(first_dates: Mapping[int, date], interval: Interval) -> list[HistoryPoint]:
    """New and cumulative customers per period, oldest first; [] when there are none.

    `first_dates` maps each customer ID to the date of its first invoice. The last point's
    `cumulative` equals `len(first_dates)`.
    """
    return growth_from_days(Counter(first_dates.values()), interval)


def growth_from_days(new_per_day: Mapping[date, int], interval: Interval) -> list[HistoryPoint]:
    """As :func:`growth_history`, from how many customers started on each day."""
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}, not {interval!r}")
    new: Counter[int] = Counter()
    for day, count in new_per_day.items():
        new[_index(day, interval)] += count
    new = +new  # drop days that start nobody
    if not new:
        return []
    points: list[HistoryPoint] = []
    cumulative = 0
    for index in range(min(new), max(new) + 1):
        cumulative += new[index]
        points.append(HistoryPoint(_label(index, interval), new[index], cumulative))
    return points


def to_csv(points: Iterable[HistoryPoint]) -> str:
    """`period,new,cumulative` then one line per point, each line ending in "\\n"."""
    lines = ["period,new,cumulative"]
    lines.extend(f"{p.period},{p.new},{p.cumulative}" for p in points)
    return "\n".join(lines) + "\n"
