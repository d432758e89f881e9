"""The console's charts: inline SVG drawn on the server, in plain Python.

Why not a charting library: the pages run no third-party code and no inline script, and a bar
chart of at most 366 days is a few dozen lines of SVG. Each chart is an ``<svg role="img">``
whose accessible name states what a person would read off it (the total, the busiest day), so a
screen reader gets the point of the picture, and a ``<title>`` per bar gives the exact figure on
hover. Every string that reaches the SVG (an app's model names, key names) passes through
:func:`markupsafe.escape`: what is returned is :class:`~markupsafe.Markup`, safe to put in a page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from markupsafe import Markup, escape

__all__ = [
    "PALETTE",
    "Series",
    "daily_bars",
    "day_range",
    "fmt_cost",
    "fmt_count",
    "nice_ceiling",
    "per_day",
    "share_bars",
]

# Each at least 3:1 against white (WCAG's contrast for graphics) and apart from its neighbours.
PALETTE: Final = ("#1f5fbf", "#1e6b35", "#b3261e", "#7a4fb3", "#8a5300", "#0f6e7a", "#59606b")
_W: Final = 640
_H: Final = 220
_LEFT: Final = 56  # room for the y axis's figures
_RIGHT: Final = 8
_TOP: Final = 14
_BOTTOM: Final = 28  # room for the dates
_INK: Final = "#1d2127"
_GRID: Final = "#d5d9df"


@dataclass(frozen=True, slots=True)
class Series:
    """One stacked part of a daily chart: its name (the legend's), a value per day, a colour."""

    name: str
    values: Sequence[float]
    colour: str


def fmt_count(value: float) -> str:
    return f"{round(value):,}"


def fmt_cost(value: float) -> str:
    """USD: cents for a dollar or more, else up to four decimals (a small app's day costs 0.0123)."""
    return f"${value:,.2f}" if value >= 1 or value == 0 else "$" + f"{value:.4f}".rstrip("0")


def day_range(start: date, end: date) -> list[date]:
    """Every day from ``start`` through ``end``."""
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def per_day(values: Mapping[date, float], days: Sequence[date]) -> list[float]:
    """A value per day of ``days``, 0 for a day ``values`` lacks (the API lists active days only)."""
    return [values.get(day, 0.0) for day in days]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at least ``value`` (an axis's top)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10.0 * power


def _n(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, text: str, *, anchor: str = "middle") -> str:
    return f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" fill="{_INK}">{escape(text)}</text>'


def _svg(label: str, body: Iterable[str], *, height: int = _H) -> Markup:
    text = escape(label)
    return Markup(
        f'<svg class="chart" role="img" aria-label="{text}" viewBox="0 0 {_W} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="12">'
        f"<title>{text}</title>{''.join(body)}</svg>"
    )


def _legend(series: Sequence[Series]) -> Markup:
    items = "".join(
        f'<li><svg class="swatch" aria-hidden="true" viewBox="0 0 10 10" width="12" height="12">'
        f'<rect width="10" height="10" rx="2" fill="{escape(s.colour)}"/></svg>{escape(s.name)}</li>'
        for s in series
    )
    return Markup(f'<ul class="chart-legend" aria-hidden="true">{items}</ul>')


def daily_bars(
    *, what: str, days: Sequence[date], series: Sequence[Series], fmt: Callable[[float], str] = fmt_count
) -> Markup:
    """Bars per day, the series stacked bottom up; its name says ``what`` per day over how many
    days, the total (and each series' that has any, if more than one) and the busiest day.

    ``what`` is the measure ("Requests"); ``fmt`` writes its figures.
    """
    if not days or any(len(s.values) != len(days) for s in series):
        raise ValueError("a chart needs a value per day in every series")
    totals = [sum(s.values[i] for s in series) for i in range(len(days))]
    grand = sum(totals)
    span = f"{what} per day, {len(days)} days"
    if grand <= 0:
        label = f"{span}: none"
    else:
        busiest = max(range(len(days)), key=lambda i: (totals[i], -i))
        named = [f"{s.name} {fmt(sum(s.values))}" for s in series if sum(s.values) > 0]
        parts = f", {'; '.join(named)}" if len(series) > 1 else ""
        peak = f"most on {days[busiest].isoformat()} ({fmt(totals[busiest])})"
        label = f"{span}, {fmt(grand)} in total{parts}, {peak}"
    top = nice_ceiling(max(totals, default=0))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / len(days)
    gap = min(2.0, slot * 0.2)
    base = _TOP + plot_h
    body: list[str] = []
    # Grid lines with their figures; the middle one only where its figure is exact (2.5 requests
    # would read "2").
    for tick in (0.0, top / 2, top):
        if not math.isclose(float(fmt(tick).lstrip("$").replace(",", "")), tick):
            continue
        y = base - plot_h * tick / top
        body.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_n(y)}" y2="{_n(y)}" stroke="{_GRID}"/>')
        body.append(_text(_LEFT - 6, y + 4, fmt(tick), anchor="end"))
    for i, day in enumerate(days):
        x, y = _LEFT + i * slot + gap / 2, base
        for s in series:
            value = s.values[i]
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            tip = escape(
                f"{day.isoformat()}: {s.name} {fmt(value)}"
                if len(series) > 1
                else f"{day.isoformat()}: {fmt(value)}"
            )
            body.append(
                f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(max(slot - gap, 0.5))}" height="{_n(h)}" '
                f'fill="{escape(s.colour)}"><title>{tip}</title></rect>'
            )
    # The first, middle and last day, the outer two flush with the plot's edges.
    body.append(_text(_LEFT, _H - 8, days[0].strftime("%b %-d"), anchor="start"))
    if len(days) > 2:
        middle = len(days) // 2
        body.append(_text(_LEFT + (middle + 0.5) * slot, _H - 8, days[middle].strftime("%b %-d")))
    if len(days) > 1:
        body.append(_text(_W - _RIGHT, _H - 8, days[-1].strftime("%b %-d"), anchor="end"))
    body.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{base}" y2="{base}" stroke="{_INK}"/>')
    chart = _svg(label, body)
    return chart + _legend(series) if len(series) > 1 else chart


def share_bars(
    *, what: str, rows: Sequence[tuple[str, float]], fmt: Callable[[float], str] = fmt_count, most: int = 6
) -> Markup:
    """Horizontal bars of each row's share of the whole, largest first; past ``most`` rows the
    rest are summed as "Others". Its name says ``what`` it splits and each row's figure."""
    ordered = sorted((r for r in rows if r[1] > 0), key=lambda r: -r[1])
    if len(ordered) > most:
        ordered = [*ordered[: most - 1], ("Others", sum(v for _, v in ordered[most - 1 :]))]
    whole = sum(v for _, v in ordered)
    if whole <= 0:
        return _svg(f"{what}: none", [_text(0, 17, "Nothing in these days.", anchor="start")], height=24)
    label = f"{what}: " + "; ".join(f"{name} {fmt(v)} ({v / whole:.0%})" for name, v in ordered)
    row_h, name_w = 30, 200
    bar_w = _W - name_w - 130
    body: list[str] = []
    for i, (name, value) in enumerate(ordered):
        y = i * row_h
        body.append(_text(0, y + 19, name if len(name) <= 28 else name[:27] + "…", anchor="start"))
        body.append(f'<rect x="{name_w}" y="{y + 6}" width="{bar_w}" height="18" rx="2" fill="#f4f6f8"/>')
        body.append(
            f'<rect x="{name_w}" y="{y + 6}" width="{_n(max(bar_w * value / whole, 1))}" height="18" rx="2" '
            f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(f"{name}: {fmt(value)}")}</title></rect>'
        )
        body.append(_text(name_w + bar_w + 8, y + 19, f"{fmt(value)} ({value / whole:.0%})", anchor="start"))
    return _svg(label, body, height=len(ordered) * row_h + 4)
