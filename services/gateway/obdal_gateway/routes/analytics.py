"""``GET /v1/analytics`` and ``GET /v1/analytics/unanswered``: the key's app's support figures.

Scope ``sessions:read``, not ``usage:read``: the top questions and the unanswered groups show
end users' own questions, as ``GET /v1/sessions`` does; a key that may only read usage must not
read them (and a publishable key holds no read scope).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import get

from obdal_common.cursors import checked_cursor, checked_limit
from obdal_common.errors import BadRequest
from obdal_common.schemas import AnalyticsQuery, UnansweredQuery
from obdal_gateway.auth import Principal
from obdal_gateway.dates import parse_date_range
from obdal_gateway.state import Gateway

__all__ = ["analytics", "unanswered"]

_MAX_TOP = 50
_MAX_GROUPS = 100
_MAX_EXAMPLES = 20


def _checked_count(name: str, value: int, *, least: int, most: int) -> int:
    if not least <= value <= most:
        raise BadRequest(f"{name} must be between {least} and {most}", code=f"invalid_{name}")
    return value


@get(
    "/v1/analytics",
    summary="Support figures of the key's app by day, its top questions and most cited files",
    opt={"scope": "sessions:read"},
)
async def analytics(
    principal: Principal,
    gw: Gateway,
    start_date: str | None = None,
    end_date: str | None = None,
    group_by: str = "day",
    top: int = 10,
) -> dict[str, Any]:
    """Over ``start_date``..``end_date`` (UTC days, both ends inclusive; default the last 30 days):
    ``totals`` (conversations started, messages, distinct end users, turns answered, declined,
    answered by a curated answer, small talk, handed off, ratings up and down), ``series`` (the
    same per day with activity), the ``top`` (1-50) most asked ``top_questions`` (groups of
    similar questions), ``top_files`` (most cited) and ``curated_answers`` (served, rated).
    ``as_of``: figures count every change stored before it (they trail by a few seconds)."""
    start, end = parse_date_range(start_date, end_date)
    if group_by != "day":
        raise BadRequest("group_by must be day", code="invalid_group_by")
    query = AnalyticsQuery(
        app_id=principal.app_id,
        start_date=start,
        end_date=end,
        top=_checked_count("top", top, least=1, most=_MAX_TOP),
    )
    body: dict[str, Any] = msgspec.to_builtins(await gw.metering.analytics(query))
    return body


@get(
    "/v1/analytics/unanswered",
    summary="Groups of similar questions that went unanswered, most unanswered first",
    opt={"scope": "sessions:read"},
)
async def unanswered(
    principal: Principal,
    gw: Gateway,
    start_date: str | None = None,
    end_date: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
    examples: int = 3,
) -> dict[str, Any]:
    """Groups of similar questions asked within ``start_date``..``end_date`` (UTC days, inclusive;
    default the last 30 days) of which some were declined or rated down: each with its
    ``count``, how many went ``unanswered``, a ``representative`` question, up to ``examples``
    (0-20) of its newest unanswered questions and ``last_asked_at``; most unanswered first, then
    most recently asked. ``limit`` (1-100) groups per page; pass ``next_cursor`` back as ``cursor``."""
    start, end = parse_date_range(start_date, end_date)
    checked_limit(limit, most=_MAX_GROUPS)
    query = UnansweredQuery(
        app_id=principal.app_id,
        start_date=start,
        end_date=end,
        limit=limit,
        cursor=checked_cursor(cursor),
        examples=_checked_count("examples", examples, least=0, most=_MAX_EXAMPLES),
    )
    body: dict[str, Any] = msgspec.to_builtins(await gw.metering.unanswered(query))
    return body
