"""The dashboard's customer growth chart: the history drawn as one SVG string.

Pure: no I/O, no randomness; the same points always give the same bytes. Two panels share
the x axis (one slot per period, oldest first):

- on top, the cumulative customers as a line over a light area;
- below, the new customers of each period as bars.

Each panel has its own y scale with round ticks (0, 100, 200 … or 0, 2, 4 …) and labels
with thousands separators. Period labels along the x axis are thinned to what fits,
aligned on the calendar (every January, every other year …). Every period is a `<g>`
with a `<title>` (the browser's tooltip) and a transparent hit area as tall as both
panels, so periods without new customers can be hovered too.

Colours come from CSS classes (`admin.css` styles the chart when it is placed in the
page); the presentation attributes beside them only make the file readable on its own,
and lose to any CSS rule. No `style` attribute or element: the admin's CSP allows none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape, quoteattr

from simpro_counter.metrics import HistoryPoint, Interval

WIDTH = 960
HEIGHT = 420
CHAR_WIDTH = 7.2
"""A generous width of one character of the 12 px labels, in viewBox units."""

_RIGHT = 24
_TOP = (40.0, 226.0)  # the cumulative panel: top and baseline
_BOTTOM = (282.0, 372.0)  # the new-customers panel: top and baseline
_X_LABELS = 392.0  # baseline of the period labels
_LABEL_GAP = 14.0  # the least space between two period labels
_BAR_SHARE = 0.72  # of a slot's width
_BAR_MAX = 48.0
_MARKERS_UP_TO = 40  # periods: above that, the line has no dots (they would touch)

# Steps between labelled periods, by interval, in periods; the first that fits is used.
_YEAR_STEPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
_LABEL_STEPS: dict[str, tuple[int, ...]] = {
    "month": (1, 2, 3, 4, 6, *(12 * years for years in _YEAR_STEPS)),
    "quarter": (1, 2, *(4 * years for years in _YEAR_STEPS)),
    "year": _YEAR_STEPS,
}


def nice_ticks(maximum: int, target: int = 5) -> list[int]:
    """Round ticks from 0 to at least `maximum`, about `target` steps of 1, 2 or 5 times 10^k.

    Whole numbers only (the chart counts customers): `nice_ticks(340)` is
    `[0, 100, 200, 300, 400]`, `nice_ticks(7)` `[0, 2, 4, 6, 8]`, `nice_ticks(0)` `[0, 1]`.
    """
    if maximum <= 0:
        return [0, 1]
    raw = maximum / target
    magnitude = 10 ** max(0, math.floor(math.log10(raw))) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    top = -(-maximum // step) * step
    return list(range(0, top + 1, step))


def period_ordinal(period: str, interval: Interval) -> int | None:
    """A period label as a number, consecutive periods being consecutive numbers.

    `"2024-03"` → 2024 * 12 + 2, `"2024-Q2"` → 2024 * 4 + 1, `"2024"` → 2024; None for a
    label that is not of the interval's form.
    """
    try:
        if interval == "month":
            year, month = period.split("-")
            return int(year) * 12 + int(month) - 1
        if interval == "quarter":
            year, quarter = period.split("-Q")
            return int(year) * 4 + int(quarter) - 1
        return int(period)
    except ValueError:
        return None


def labelled_periods(
    periods: Sequence[str], interval: Interval, plot_width: float = WIDTH
) -> list[int]:
    """Indexes of the periods whose label is drawn: as many as fit without overlapping.

    Labels are `step` periods apart, the step being the smallest calendar-friendly one
    (1, 2, 3, 4, 6 months, 1, 2, 5, 10 … years) that fits, and sit on multiples of it
    (January, every other January …) so they do not shift as periods are added.
    """
    count = len(periods)
    if count == 0:
        return []
    widest = max(len(period) for period in periods)
    fits = max(1, math.floor(plot_width / (widest * CHAR_WIDTH + _LABEL_GAP)))
    needed = math.ceil(count / fits)
    steps = _LABEL_STEPS.get(interval, _YEAR_STEPS)
    step = next((s for s in steps if s >= needed), needed)
    ordinals = [period_ordinal(period, interval) for period in periods]
    if any(ordinal is None for ordinal in ordinals):  # not ours: count from the first
        chosen = list(range(0, count, step))
    else:
        chosen = [
            i for i, ordinal in enumerate(ordinals) if ordinal is not None and not ordinal % step
        ]
    return chosen or [0]


def growth_svg(points: Sequence[HistoryPoint], interval: Interval, *, undated: int = 0) -> str:
    """The chart of `points` (oldest first, as `growth_history` returns them).

    No points: the same frame with a sentence saying there is nothing to draw yet.
    `undated` customers (none of their invoices has a date) are mentioned, not drawn.
    """
    if not points:
        return _empty(interval, undated)
    count = len(points)
    new_ticks = nice_ticks(max(point.new for point in points))
    total_ticks = nice_ticks(max(point.cumulative for point in points))
    widest_tick = max(len(_int(tick)) for tick in (*new_ticks, *total_ticks))
    left = max(44.0, widest_tick * CHAR_WIDTH + 16)
    plot_width = WIDTH - left - _RIGHT
    slot = plot_width / count
    bar_width = min(slot * _BAR_SHARE, _BAR_MAX)

    def centre(i: int) -> float:
        return left + slot * (i + 0.5)

    def y_total(value: int) -> float:
        top, base = _TOP
        return base - (base - top) * value / total_ticks[-1]

    def y_new(value: int) -> float:
        top, base = _BOTTOM
        return base - (base - top) * value / new_ticks[-1]

    parts: list[str] = [
        _text(left, _TOP[0] - 16, "Customers, cumulative", "panel-title"),
        _text(left, _BOTTOM[0] - 16, f"New customers per {interval}", "panel-title"),
    ]
    if undated:
        parts.append(
            _text(
                WIDTH - _RIGHT,
                _TOP[0] - 16,
                f"{_int(undated)} without a dated invoice not shown",
                "note",
                anchor="end",
            )
        )
    parts += _axis(total_ticks, y_total, left)
    parts += _axis(new_ticks, y_new, left)

    line = [(centre(i), y_total(point.cumulative)) for i, point in enumerate(points)]
    path = " ".join(f"{'M' if i == 0 else 'L'}{_n(x)} {_n(y)}" for i, (x, y) in enumerate(line))
    base = _n(_TOP[1])
    parts.append(
        f'<path class="cumulative-area" d="M{_n(line[0][0])} {base} L{path[1:]} '
        f'L{_n(line[-1][0])} {base} Z" fill="#2454d6" fill-opacity="0.1" stroke="none"/>'
    )

    parts.append('<g class="periods">')
    hit_top, hit_height = _TOP[0], _BOTTOM[1] - _TOP[0]
    for i, point in enumerate(points):
        height = _BOTTOM[1] - y_new(point.new)
        tip = f"{point.period}: {_int(point.new)} new, {_int(point.cumulative)} in total"
        parts.append(
            f'<g class="period" data-period={quoteattr(point.period)}>'
            f"<title>{escape(tip)}</title>"
            f'<rect class="hit" x="{_n(left + slot * i)}" y="{_n(hit_top)}" '
            f'width="{_n(slot)}" height="{_n(hit_height)}" fill="#2454d6" fill-opacity="0"/>'
            f'<rect class="new-bar" x="{_n(centre(i) - bar_width / 2)}" '
            f'y="{_n(_BOTTOM[1] - height)}" width="{_n(bar_width)}" height="{_n(height)}" '
            f'fill="#0f8f7e"/></g>'
        )
    parts.append("</g>")

    parts.append(
        f'<path class="cumulative-line" d="{path}" fill="none" stroke="#2454d6" '
        'stroke-width="2" stroke-linejoin="round" pointer-events="none"/>'
    )
    marked = range(count) if count <= _MARKERS_UP_TO else range(count - 1, count)
    parts += [
        f'<circle class="marker" cx="{_n(line[i][0])}" cy="{_n(line[i][1])}" r="3" '
        'fill="#2454d6" pointer-events="none"/>'
        for i in marked
    ]
    last_x, last_y = line[-1]
    parts.append(_text(last_x, last_y - 9, _int(points[-1].cumulative), "end-label", anchor="end"))

    parts.append(
        f'<line class="axis" x1="{_n(left)}" y1="{_n(_BOTTOM[1])}" x2="{_n(WIDTH - _RIGHT)}" '
        f'y2="{_n(_BOTTOM[1])}" stroke="#5d6b82"/>'
    )
    for i in labelled_periods([point.period for point in points], interval, plot_width):
        x = centre(i)
        parts.append(
            f'<line class="x-tick" x1="{_n(x)}" y1="{_n(_BOTTOM[1])}" x2="{_n(x)}" '
            f'y2="{_n(_BOTTOM[1] + 5)}" stroke="#5d6b82"/>'
        )
        parts.append(_text(x, _X_LABELS, points[i].period, "period-label", anchor="middle"))
    return _svg(_summary(points, interval, undated), interval, count, parts)


def _summary(points: Sequence[HistoryPoint], interval: Interval, undated: int) -> str:
    busiest = max(points, key=lambda point: point.new)  # the first of equals
    first, last = points[0].period, points[-1].period
    span = first if first == last else f"{first} to {last}"
    text = (
        f"Customer growth by {interval}, {span}: {_int(points[-1].cumulative)} customers in "
        f"total; the most new customers in one {interval}: {_int(busiest.new)}, in "
        f"{busiest.period}."
    )
    if undated:
        text += f" {_int(undated)} customers without a dated invoice are not shown."
    return text


def _empty(interval: Interval, undated: int) -> str:
    message = "No customer has a dated invoice yet: the chart starts with the first one."
    parts = [
        _text(WIDTH / 2, HEIGHT / 2, message, "empty-message", anchor="middle"),
    ]
    summary = f"Customer growth by {interval}: no customer has a dated invoice yet."
    if undated:
        summary += f" {_int(undated)} customers without a dated invoice are not shown."
    return _svg(summary, interval, 0, parts)


def _axis(ticks: list[int], y_of: Callable[[int], float], left: float) -> list[str]:
    lines: list[str] = []
    for tick in ticks:
        y = _n(y_of(tick))
        lines.append(
            f'<line class="gridline" x1="{_n(left)}" y1="{y}" x2="{_n(WIDTH - _RIGHT)}" y2="{y}" '
            'stroke="#e3e8f0"/>'
        )
        lines.append(
            f'<text class="y-tick" x="{_n(left - 8)}" y="{y}" text-anchor="end" '
            f'dominant-baseline="middle" fill="#5d6b82">{_int(tick)}</text>'
        )
    return lines


def _svg(summary: str, interval: Interval, periods: int, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="growth-chart" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f"aria-label={quoteattr(summary)} data-interval={quoteattr(interval)} "
        f'data-periods="{periods}" font-family="system-ui, sans-serif" font-size="12">'
        + "".join(parts)
        + "</svg>\n"
    )


def _text(x: float, y: float, text: str, css: str, *, anchor: str = "start") -> str:
    return (
        f'<text class="{css}" x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" '
        f'fill="#172033">{escape(text)}</text>'
    )


def _int(value: int) -> str:
    return f"{value:,}"


def _n(value: float) -> str:
    """A coordinate with at most two decimals, without trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
