"""The console's server-drawn SVG charts: bars to scale, empty data, names that say the figures,
and every supplied string rendered inert."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date

import pytest

from obdal_gateway.console.charts import (
    Series,
    daily_bars,
    day_range,
    fmt_cost,
    nice_ceiling,
    per_day,
    share_bars,
)

SVG = "{http://www.w3.org/2000/svg}"
DAYS = day_range(date(2026, 11, 1), date(2026, 11, 30))


def _svg(markup: str) -> ET.Element:
    """The chart's <svg> element, parsed as XML (so it must be well formed)."""
    found = re.search(r"<svg class=\"chart\".*?</svg>", markup, re.S)
    assert found is not None
    return ET.fromstring(found.group(0))


def _bars(svg: ET.Element) -> list[ET.Element]:
    # The bars are the rects with a tooltip; share charts' grey tracks have none.
    return [r for r in svg.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]


def test_days_and_values_per_day() -> None:
    assert len(DAYS) == 30
    assert (DAYS[0], DAYS[-1]) == (date(2026, 11, 1), date(2026, 11, 30))
    assert per_day({date(2026, 11, 2): 5.0}, DAYS[:3]) == [0.0, 5.0, 0.0]


@pytest.mark.parametrize(("value", "ceiling"), [(0, 1), (1, 1), (3, 5), (87, 100), (120, 200), (0.013, 0.02)])
def test_axis_tops_are_round(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_bars_scale_to_their_values_and_the_name_states_the_figures() -> None:
    values = [0.0] * 30
    values[4], values[19] = 40.0, 87.0
    svg = _svg(daily_bars(what="Requests", days=DAYS, series=[Series("Requests", values, "#1f5fbf")]))
    assert svg.get("role") == "img"
    label = svg.get("aria-label")
    assert label == "Requests per day, 30 days, 127 in total, most on 2026-11-20 (87)"
    assert svg.findtext(f"{SVG}title") == label
    bars = _bars(svg)
    assert len(bars) == 2  # days without requests draw no bar
    low, high = (float(b.get("height", "0")) for b in bars)
    assert high / low == pytest.approx(87 / 40, rel=0.01)
    assert float(bars[0].get("x", "0")) < float(bars[1].get("x", "0"))
    assert [b.findtext(f"{SVG}title") for b in bars] == ["2026-11-05: 40", "2026-11-20: 87"]
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert {"0", "50", "100", "Nov 1", "Nov 30"} <= set(texts)  # the axes' figures and dates


def test_stacked_series_stack_and_each_total_is_named() -> None:
    answered, declined = [1.0] * 30, [0.0] * 30
    declined[0] = 3.0
    markup = daily_bars(
        what="Questions",
        days=DAYS,
        series=[Series("Answered", answered, "#1e6b35"), Series("Declined", declined, "#b3261e")],
    )
    svg = _svg(markup)
    assert svg.get("aria-label") == (
        "Questions per day, 30 days, 33 in total, Answered 30; Declined 3, most on 2026-11-01 (4)"
    )
    first_day = [b for b in _bars(svg) if (b.findtext(f"{SVG}title") or "").startswith("2026-11-01")]
    assert len(first_day) == 2
    answered_bar, declined_bar = first_day
    # Declined sits on top of answered, three times as tall.
    assert float(declined_bar.get("y", "0")) + float(declined_bar.get("height", "0")) == pytest.approx(
        float(answered_bar.get("y", "0")), abs=0.2
    )
    assert float(declined_bar.get("height", "0")) == pytest.approx(
        3 * float(answered_bar.get("height", "0")), rel=0.05
    )
    assert 'class="chart-legend"' in markup
    assert "Declined</li>" in markup


def test_empty_data_draws_axes_and_says_none() -> None:
    svg = _svg(
        daily_bars(what="Cost", days=DAYS, series=[Series("Cost", [0.0] * 30, "#1e6b35")], fmt=fmt_cost)
    )
    assert svg.get("aria-label") == "Cost per day, 30 days: none"
    assert _bars(svg) == []
    shares = _svg(share_bars(what="Requests by model", rows=[]))
    assert shares.get("aria-label") == "Requests by model: none"
    assert "Nothing in these days." in [t.text for t in shares.iter(f"{SVG}text")]
    with pytest.raises(ValueError, match="a value per day"):
        daily_bars(what="Requests", days=DAYS, series=[Series("Requests", [1.0], "#000")])


def test_one_day_and_costs() -> None:
    svg = _svg(
        daily_bars(what="Cost", days=DAYS[:1], series=[Series("Cost", [0.0123], "#1e6b35")], fmt=fmt_cost)
    )
    assert svg.get("aria-label") == "Cost per day, 1 days, $0.0123 in total, most on 2026-11-01 ($0.0123)"
    assert fmt_cost(0) == "$0.00"
    assert fmt_cost(1234.5) == "$1,234.50"


def test_shares_are_ordered_and_the_rest_summed() -> None:
    rows = [(f"model-{n}", float(n)) for n in range(1, 9)]  # 36 in all
    svg = _svg(share_bars(what="Requests by model", rows=rows, most=4))
    label = svg.get("aria-label") or ""
    assert label.startswith(
        "Requests by model: model-8 8 (22%); model-7 7 (19%); model-6 6 (17%); Others 15 (42%)"
    )
    widths = [float(b.get("width", "0")) for b in _bars(svg)]
    assert widths[0] > widths[1] > widths[2]
    assert widths[3] == pytest.approx(widths[0] * 15 / 8, rel=0.01)


def test_supplied_names_are_escaped() -> None:
    hostile = '<script>alert(1)</script>"onload="x'
    shares = str(share_bars(what="Requests by key", rows=[(hostile, 3.0), ("plain", 1.0)]))
    daily = str(
        daily_bars(what="Questions", days=DAYS[:2], series=[Series(hostile, [1.0, 2.0], "#1f5fbf")] * 2)
    )
    for markup in (shares, daily):
        assert "<script>" not in markup
        assert '"onload="' not in markup
        assert "&lt;script&gt;" in markup
    svg = _svg(shares)
    assert hostile in (svg.get("aria-label") or "")  # the text, inert, as a screen reader reads it
    assert any(hostile[:27] in (t.text or "") for t in svg.iter(f"{SVG}text"))
