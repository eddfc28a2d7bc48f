"""metrics: customer growth history (new and cumulative customers per period) and its CSV."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simpro_counter.metrics import (
    HistoryPoint,
    Interval,
    growth_from_days,
    growth_history,
    period_of,
    to_csv,
)
from simpro_counter.metrics.history import INTERVALS

first_dates = st.dictionaries(
    st.integers(min_value=1, max_value=10**9),
    st.dates(min_value=date(1990, 1, 1), max_value=date(2040, 12, 31)),
    max_size=60,
)


def next_period(period: str, interval: Interval) -> str:
    if interval == "year":
        return str(int(period) + 1)
    if interval == "quarter":
        year, quarter = int(period[:4]), int(period[-1])
        return f"{year + 1}-Q1" if quarter == 4 else f"{year}-Q{quarter + 1}"
    year, month = int(period[:4]), int(period[5:])
    return f"{year + 1}-01" if month == 12 else f"{year}-{month + 1:02d}"


@settings(max_examples=150, deadline=None)
@given(first_dates, st.sampled_from(INTERVALS))
def test_history_properties(dates: dict[int, date], interval: Interval) -> None:
    points = growth_history(dates, interval)
    if not dates:
        assert points == []
        return
    # Contiguous from the first customer's period to the last one's.
    assert points[0].period == period_of(min(dates.values()), interval)
    assert points[-1].period == period_of(max(dates.values()), interval)
    for before, after in itertools.pairwise(points):
        assert after.period == next_period(before.period, interval)
    # New adds up to cumulative, which never falls and ends at the number of customers.
    running = 0
    for point in points:
        assert point.new >= 0
        running += point.new
        assert point.cumulative == running
    assert points[-1].cumulative == len(dates)
    # Each period's new customers are exactly those first invoiced in it.
    by_period = {p.period: p.new for p in points}
    for period, new in by_period.items():
        assert new == sum(1 for d in dates.values() if period_of(d, interval) == period)


def test_periods_are_formatted() -> None:
    assert period_of(date(2024, 3, 31), "month") == "2024-03"
    assert period_of(date(2024, 3, 31), "quarter") == "2024-Q1"
    assert period_of(date(2024, 4, 1), "quarter") == "2024-Q2"
    assert period_of(date(2024, 12, 31), "quarter") == "2024-Q4"
    assert period_of(date(2024, 12, 31), "year") == "2024"


def test_gaps_are_filled_with_zero() -> None:
    dates = {1: date(2023, 11, 5), 2: date(2024, 2, 1), 3: date(2024, 2, 28), 4: date(2023, 11, 1)}
    assert growth_history(dates, "month") == [
        HistoryPoint("2023-11", 2, 2),
        HistoryPoint("2023-12", 0, 2),
        HistoryPoint("2024-01", 0, 2),
        HistoryPoint("2024-02", 2, 4),
    ]
    assert growth_history(dates, "quarter") == [
        HistoryPoint("2023-Q4", 2, 2),
        HistoryPoint("2024-Q1", 2, 4),
    ]
    assert growth_history(dates, "year") == [HistoryPoint("2023", 2, 2), HistoryPoint("2024", 2, 4)]


def test_csv() -> None:
    points = growth_history({1: date(2024, 1, 9), 2: date(2024, 3, 2)}, "month")
    assert to_csv(points) == "period,new,cumulative\n2024-01,1,1\n2024-02,0,1\n2024-03,1,2\n"
    assert to_csv([]) == "period,new,cumulative\n"


def test_unknown_interval() -> None:
    with pytest.raises(ValueError, match="interval must be one of"):
        growth_history({1: date(2024, 1, 1)}, "week")  # type: ignore[arg-type]


@given(
    first_dates=st.dictionaries(
        st.integers(1, 10_000), st.dates(date(2015, 1, 1), date(2030, 12, 31)), max_size=200
    ),
    interval=st.sampled_from(INTERVALS),
)
def test_from_days_equals_from_first_dates(
    first_dates: dict[int, date], interval: Interval
) -> None:
    """The ledger keeps customers per first day; grouping those gives the same history."""
    per_day = Counter(first_dates.values())
    per_day[date(2031, 1, 1)] = 0  # a day that starts nobody (all its customers moved on)
    assert growth_from_days(per_day, interval) == growth_history(first_dates, interval)
