"""The growth chart's SVG, parsed back: one bar per period, heights, line, labels, text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from itertools import pairwise
from random import Random

import pytest

from simpro_counter.metrics import HistoryPoint, Interval, growth_history
from simpro_counter.web.admin.chart import (
    CHAR_WIDTH,
    growth_svg,
    labelled_periods,
    nice_ticks,
    period_ordinal,
)

SVG = "{http://www.w3.org/2000/svg}"


def _first_dates(customers: int = 340, seed: int = 7) -> dict[int, date]:
    rng = Random(seed)
    start = date(2019, 1, 1)
    return {i: start + timedelta(days=rng.randint(0, 5 * 365)) for i in range(customers)}


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def _all(root: ET.Element, tag: str, css: str) -> list[ET.Element]:
    return [el for el in root.iter(f"{SVG}{tag}") if el.get("class") == css]


def _bars(root: ET.Element) -> list[ET.Element]:
    return _all(root, "rect", "new-bar")


def _line_points(root: ET.Element) -> list[tuple[float, float]]:
    [line] = _all(root, "path", "cumulative-line")
    pairs = re.findall(r"[ML](-?[\d.]+) (-?[\d.]+)", line.get("d", ""))
    return [(float(x), float(y)) for x, y in pairs]


def _texts(root: ET.Element, css: str) -> list[str]:
    return [el.text or "" for el in _all(root, "text", css)]


def _months(count: int, start_year: int = 1800) -> list[HistoryPoint]:
    points: list[HistoryPoint] = []
    for i in range(count):
        year, month = divmod(i, 12)
        new = (i * 7) % 13
        total = (points[-1].cumulative if points else 0) + new
        points.append(HistoryPoint(f"{start_year + year:04d}-{month + 1:02d}", new, total))
    return points


@pytest.mark.parametrize("interval", ["month", "quarter", "year"])
def test_one_bar_per_period_with_heights_proportional_to_new(interval: Interval) -> None:
    points = growth_history(_first_dates(), interval)
    root = _parse(growth_svg(points, interval))
    bars = _bars(root)
    assert len(bars) == len(points) > 1
    assert root.get("data-periods") == str(len(points))
    # The bars are in period order, left to right, each in its period's group.
    groups = _all(root, "g", "period")
    assert [g.get("data-period") for g in groups] == [p.period for p in points]
    assert [_bars(g) for g in groups] == [[bar] for bar in bars]
    xs = [float(bar.get("x", "nan")) for bar in bars]
    assert xs == sorted(xs)
    assert len(set(xs)) == len(xs)
    heights = [float(bar.get("height", "nan")) for bar in bars]
    busiest = max(points, key=lambda p: p.new)
    scale = heights[points.index(busiest)] / busiest.new
    assert scale > 0
    for point, height in zip(points, heights, strict=True):
        assert height == pytest.approx(point.new * scale, abs=0.01), point
    # Bars stand on one baseline.
    bottoms = {round(float(b.get("y", "nan")) + float(b.get("height", "nan")), 1) for b in bars}
    assert len(bottoms) == 1


@pytest.mark.parametrize("interval", ["month", "quarter", "year"])
def test_the_line_climbs_to_the_total_at_the_last_period(interval: Interval) -> None:
    points = growth_history(_first_dates(), interval)
    root = _parse(growth_svg(points, interval))
    line = _line_points(root)
    assert len(line) == len(points)
    ys = [y for _, y in line]
    # SVG y grows downwards: the highest cumulative is the smallest y, at the last point.
    assert ys[-1] == min(ys)
    assert all(later <= earlier for earlier, later in pairwise(ys))
    # Heights above the baseline are proportional to the cumulative count.
    area = _all(root, "path", "cumulative-area")[0].get("d", "")
    base_y = float(re.findall(r"M(-?[\d.]+) (-?[\d.]+)", area)[0][1])  # the area's floor
    assert base_y >= max(ys)
    scale = (base_y - ys[-1]) / points[-1].cumulative
    for point, y in zip(points, ys, strict=True):
        assert base_y - y == pytest.approx(point.cumulative * scale, abs=0.01)
    # Each point sits above its period's bar.
    centres = [float(b.get("x", "nan")) + float(b.get("width", "nan")) / 2 for b in _bars(root)]
    assert [x for x, _ in line] == pytest.approx(centres, abs=0.02)
    assert _texts(root, "end-label") == [f"{points[-1].cumulative:,}"]


def test_tooltips_name_the_period_and_its_numbers() -> None:
    points = growth_history(_first_dates(customers=5000, seed=3), "quarter")
    root = _parse(growth_svg(points, "quarter"))
    groups = _all(root, "g", "period")
    assert len(groups) == len(points)
    for group, point in zip(groups, points, strict=True):
        [title] = group.findall(f"{SVG}title")
        assert title.text == (f"{point.period}: {point.new:,} new, {point.cumulative:,} in total")
        # The hover area spans both panels even when the period has no new customer.
        [hit] = _all(group, "rect", "hit")
        assert float(hit.get("height", "0")) > 300
    titles = [title.text or "" for title in root.iter(f"{SVG}title")]
    assert any("," in title for title in titles)  # thousands separators


def test_the_chart_says_what_it_shows() -> None:
    points = growth_history(_first_dates(), "month")
    root = _parse(growth_svg(points, "month", undated=4))
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    label = root.get("aria-label", "")
    assert f"{points[0].period} to {points[-1].period}" in label
    assert f"{points[-1].cumulative:,} customers in total" in label
    busiest = max(points, key=lambda p: p.new)
    assert f"{busiest.new:,}, in {busiest.period}" in label
    assert "4 customers without a dated invoice" in label
    assert _texts(root, "panel-title") == ["Customers, cumulative", "New customers per month"]
    assert _texts(root, "note") == ["4 without a dated invoice not shown"]
    assert root.get("viewBox") == "0 0 960 420"


def test_no_points_draws_a_message_and_no_bars() -> None:
    root = _parse(growth_svg([], "year"))
    assert root.get("role") == "img"
    assert root.get("data-periods") == "0"
    assert _bars(root) == []
    assert _all(root, "path", "cumulative-line") == []
    assert _all(root, "g", "period") == []
    [message] = _texts(root, "empty-message")
    assert "No customer has a dated invoice yet" in message
    assert "no customer has a dated invoice yet" in root.get("aria-label", "")


def test_one_point() -> None:
    points = [HistoryPoint("2024-03", 12, 12)]
    root = _parse(growth_svg(points, "month"))
    [bar] = _bars(root)
    assert float(bar.get("height", "0")) > 0
    assert float(bar.get("width", "0")) <= 48  # a single bar is not as wide as the chart
    [(x, _)] = _line_points(root)
    assert x == pytest.approx(float(bar.get("x", "nan")) + float(bar.get("width", "nan")) / 2)
    assert len(_all(root, "circle", "marker")) == 1  # a one-point line is invisible: a dot
    assert _texts(root, "period-label") == ["2024-03"]
    assert "2024-03:" in root.get("aria-label", "")
    assert " to " not in root.get("aria-label", "")
    [title] = root.iter(f"{SVG}title")
    assert title.text == "2024-03: 12 new, 12 in total"


def test_a_few_periods_are_all_labelled() -> None:
    points = growth_history(_first_dates(), "year")
    root = _parse(growth_svg(points, "year"))
    assert _texts(root, "period-label") == [p.period for p in points]


def test_thousands_of_months_keep_one_bar_each_and_few_labels() -> None:
    points = _months(3000)  # 250 years
    root = _parse(growth_svg(points, "month"))
    assert len(_bars(root)) == 3000
    labels = _all(root, "text", "period-label")
    assert 2 <= len(labels) <= 960 / (7 * CHAR_WIDTH)
    texts = [label.text or "" for label in labels]
    # Calendar-aligned: Januaries, evenly spaced by whole years.
    assert all(text.endswith("-01") for text in texts)
    years = [int(text[:4]) for text in texts]
    steps = {b - a for a, b in pairwise(years)}
    assert len(steps) == 1
    # Far enough apart not to overlap.
    xs = [float(label.get("x", "nan")) for label in labels]
    assert min(b - a for a, b in pairwise(xs)) >= 7 * CHAR_WIDTH
    assert _texts(root, "end-label") == [f"{points[-1].cumulative:,}"]


@pytest.mark.parametrize(
    ("count", "interval", "expected"),
    [
        (12, "month", list(range(12))),
        (60, "month", [0, 6, 12, 18, 24, 30, 36, 42, 48, 54]),
        (21, "quarter", list(range(0, 21, 2))),
        (13, "quarter", list(range(13))),
        (3, "year", [0, 1, 2]),
    ],
)
def test_labelled_periods(count: int, interval: Interval, expected: list[int]) -> None:
    dates = {
        "month": [f"{2019 + i // 12}-{i % 12 + 1:02d}" for i in range(count)],
        "quarter": [f"{2019 + i // 4}-Q{i % 4 + 1}" for i in range(count)],
        "year": [str(2019 + i) for i in range(count)],
    }[interval]
    assert labelled_periods(dates, interval, 880) == expected


def test_quarter_labels_sit_on_first_quarters_when_thinned() -> None:
    periods = [f"{1900 + i // 4}-Q{i % 4 + 1}" for i in range(1, 400)]  # from 1900-Q2
    chosen = [periods[i] for i in labelled_periods(periods, "quarter", 880)]
    assert chosen
    assert all(period.endswith("-Q1") for period in chosen)
    assert len(chosen) * (7 * CHAR_WIDTH + 14) <= 880


def test_large_numbers_get_round_ticks_with_thousands_separators() -> None:
    points = [
        HistoryPoint("2023", 4_000_000, 4_000_000),
        HistoryPoint("2024", 8_345_678, 12_345_678),
    ]
    root = _parse(growth_svg(points, "year"))
    ticks = _texts(root, "y-tick")
    assert "10,000,000" in ticks
    assert "12,345,678" in _texts(root, "end-label")
    values = [int(tick.replace(",", "")) for tick in ticks]
    assert all(re.fullmatch(r"\d{1,3}(,\d{3})*", tick) for tick in ticks)
    # Two scales, each from 0 to a round number at or above the panel's largest value.
    cumulative, new = values[: values.index(0, 1)], values[values.index(0, 1) :]
    assert cumulative[-1] >= 12_345_678 > cumulative[-2]
    assert new[-1] >= 8_345_678 > new[-2]
    # The labels fit in the left margin.
    first_bar_x = float(_bars(root)[0].get("x", "nan"))
    assert first_bar_x > len("10,000,000") * CHAR_WIDTH


@pytest.mark.parametrize(
    ("maximum", "ticks"),
    [
        (0, [0, 1]),
        (1, [0, 1]),
        (3, [0, 1, 2, 3]),
        (7, [0, 2, 4, 6, 8]),
        (10, [0, 2, 4, 6, 8, 10]),
        (340, [0, 100, 200, 300, 400]),
        (1_234_567, [0, 500_000, 1_000_000, 1_500_000]),
    ],
)
def test_nice_ticks(maximum: int, ticks: list[int]) -> None:
    assert nice_ticks(maximum) == ticks


def test_period_ordinals() -> None:
    assert period_ordinal("2024-01", "month") == 2024 * 12
    assert period_ordinal("2023-12", "month") == 2024 * 12 - 1
    assert period_ordinal("2024-Q1", "quarter") == 2024 * 4
    assert period_ordinal("2023-Q4", "quarter") == 2024 * 4 - 1
    assert period_ordinal("2024", "year") == 2024
    assert period_ordinal("nope", "month") is None


def test_nothing_the_csp_would_block_and_text_is_escaped() -> None:
    points = [HistoryPoint('<b>&"x"', 1, 1), HistoryPoint("2024-02", 0, 1)]
    svg = growth_svg(points, "month")
    root = _parse(svg)  # well-formed despite the markup in a label
    assert [g.get("data-period") for g in _all(root, "g", "period")] == ['<b>&"x"', "2024-02"]
    assert "<b>" not in svg
    for element in root.iter():
        assert "style" not in element.attrib
        assert not any(name.startswith("on") for name in element.attrib)
        assert element.tag not in (f"{SVG}style", f"{SVG}script", f"{SVG}foreignObject")
    # Every coloured shape has a class admin.css can style.
    for tag in ("rect", "path", "circle", "line", "text"):
        assert all(el.get("class") for el in root.iter(f"{SVG}{tag}"))
