"""An app's overview: its usage and support figures as charts, its most unanswered questions,
and (for its owners) renaming and deleting it.

Everything comes from the API a script would call: ``GET /v1/usage`` by day, model and key,
``GET /v1/analytics`` and ``GET /v1/analytics/unanswered``; the charts are drawn on the server
(:mod:`obdal_gateway.console.charts`), so the page runs no script of its own.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from litestar import Request, get
from litestar.response import Template
from markupsafe import Markup

from obdal_gateway.console.api_client import console_api
from obdal_gateway.console.charts import (
    PALETTE,
    Series,
    daily_bars,
    day_range,
    fmt_cost,
    per_day,
    share_bars,
)
from obdal_gateway.console.render import page, page_context

__all__ = ["OVERVIEW_PAGES"]

PERIODS: Final = (7, 30, 90)
_DEFAULT_DAYS: Final = 30
_TOP_UNANSWERED: Final = 5


def _by_day(breakdown: list[dict[str, Any]], field: str, days: list[date]) -> list[float]:
    return per_day({date.fromisoformat(b["group"]): float(b[field]) for b in breakdown}, days)


def _usage_charts(
    by_day: dict[str, Any],
    by_model: dict[str, Any],
    by_key: dict[str, Any],
    *,
    days: list[date],
    names: dict[str, str],
) -> dict[str, Markup]:
    rows = by_day["breakdown"]
    return {
        "requests": daily_bars(
            what="Requests",
            days=days,
            series=[Series("Requests", _by_day(rows, "requests", days), PALETTE[0])],
        ),
        "tokens": daily_bars(
            what="Tokens",
            days=days,
            series=[
                Series("Prompt", _by_day(rows, "prompt_tokens", days), PALETTE[0]),
                Series("Completion", _by_day(rows, "completion_tokens", days), PALETTE[4]),
            ],
        ),
        "cost": daily_bars(
            what="Cost",
            days=days,
            series=[Series("Cost", _by_day(rows, "cost", days), PALETTE[1])],
            fmt=fmt_cost,
        ),
        "by_model": share_bars(
            what="Requests by model", rows=[(b["group"], b["requests"]) for b in by_model["breakdown"]]
        ),
        "by_key": share_bars(
            what="Requests by key",
            rows=[(names.get(b["group"], b["group"]), b["requests"]) for b in by_key["breakdown"]],
        ),
    }


def _support_charts(analytics: dict[str, Any], *, days: list[date]) -> dict[str, Markup]:
    series = {date.fromisoformat(d["date"]): d for d in analytics["series"]}
    outcomes = [
        ("Answered", "answered", PALETTE[1]),
        ("Curated answer", "curated", PALETTE[0]),
        ("Declined", "declined", PALETTE[2]),
        ("Handed off", "handed_off", PALETTE[3]),
        ("Small talk", "smalltalk", PALETTE[6]),
    ]
    totals = analytics["totals"]
    return {
        "outcomes": daily_bars(
            what="Questions",
            days=days,
            series=[
                Series(name, [float(series[d][field]) if d in series else 0.0 for d in days], colour)
                for name, field, colour in outcomes
            ],
        ),
        "ratings": share_bars(
            what="Ratings",
            rows=[("Helpful", totals["feedback_up"]), ("Not helpful", totals["feedback_down"])],
        ),
    }


@get("/apps/{app_id:str}", include_in_schema=False)
async def overview_page(request: Request[Any, Any, Any], app_id: str, days: str = "") -> Template:
    ctx = await page_context(request, app_id=app_id)
    period = int(days) if days in {str(p) for p in PERIODS} else _DEFAULT_DAYS
    end = datetime.now(UTC).date()
    start = end - timedelta(days=period - 1)
    dates = {"start_date": start.isoformat(), "end_date": end.isoformat()}
    api = console_api(request)

    async def read(path: str, **params: Any) -> Any:
        return await api.get(request, path, app_id=ctx.app_id, params={**dates, **params})

    async def key_names() -> dict[str, str]:
        if not ctx.may("editor"):  # listing keys is an editor's; a viewer sees their ids
            return {}
        listed = await api.get(request, f"/v1/admin/apps/{ctx.app_id}/keys")
        return {k["key_id"]: k["name"] or k["key_id"] for k in listed["keys"]}

    by_day, by_model, by_key, analytics, unanswered, names = await asyncio.gather(
        read("/v1/usage", group_by="day", limit=366),
        read("/v1/usage", group_by="model", limit=366),
        read("/v1/usage", group_by="key", limit=366),
        read("/v1/analytics", top=1),
        read("/v1/analytics/unanswered", limit=_TOP_UNANSWERED, examples=0),
        key_names(),
    )
    span = day_range(start, end)
    return page(
        "overview.html",
        ctx,
        active="overview",
        title="Overview",
        period=period,
        periods=PERIODS,
        usage=by_day,
        support=analytics["totals"],
        unanswered=unanswered["groups"],
        charts={
            **_usage_charts(by_day, by_model, by_key, days=span, names=names),
            **_support_charts(analytics, days=span),
        },
    )


OVERVIEW_PAGES = [overview_page]
