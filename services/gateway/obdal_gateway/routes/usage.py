"""``GET /v1/usage``: requests, tokens and cost of the key's app."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import get

from obdal_common.cursors import checked_cursor, checked_limit
from obdal_common.errors import BadRequest
from obdal_common.ids import is_id
from obdal_common.schemas import UsageGroup, UsageQuery
from obdal_gateway.auth import Principal
from obdal_gateway.dates import parse_date_range
from obdal_gateway.state import Gateway

__all__ = ["usage"]

# Breakdown groups per answer: a year of days. Totals always cover the whole range.
_MAX_ROWS = 366
_GROUPS = ("day", "model", "key")


@get("/v1/usage", summary="Usage of the key's app over a date range", opt={"scope": "usage:read"})
async def usage(
    principal: Principal,
    gw: Gateway,
    start_date: str | None = None,
    end_date: str | None = None,
    group_by: str = "day",
    key_id: str | None = None,
    limit: int = _MAX_ROWS,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Totals over ``start_date``..``end_date`` (UTC days, both ends inclusive; default the last
    30 days; ``start_date`` alone: from then through today, any range) and a breakdown by
    ``day``, ``model`` or ``key``, at most ``limit`` (1-366) groups per answer: pass
    ``next_cursor`` back as ``cursor`` for the next groups."""
    start, end = parse_date_range(start_date, end_date)
    if group_by not in _GROUPS:
        raise BadRequest(f"group_by must be one of {', '.join(_GROUPS)}", code="invalid_group_by")
    if key_id is not None and not is_id("key", key_id):
        raise BadRequest("key_id is not a key id", code="invalid_key_id")
    checked_limit(limit, most=_MAX_ROWS)
    group: UsageGroup = group_by  # type: ignore[assignment]
    query = UsageQuery(
        app_id=principal.app_id,
        start_date=start,
        end_date=end,
        group_by=group,
        key_id=key_id,
        limit=limit,
        cursor=checked_cursor(cursor),
    )
    report = await gw.metering.usage(query)
    body: dict[str, Any] = msgspec.to_builtins(report)
    return body
