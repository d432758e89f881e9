"""``GET /v1/usage``: requests, tokens and cost of the key's app."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get

from obdal_common import subjects
from obdal_common.errors import BadRequest
from obdal_common.ids import is_id
from obdal_common.messaging import request as nats_request
from obdal_common.schemas import UsageGroup, UsageQuery, UsageReport
from obdal_gateway.auth import authenticate
from obdal_gateway.dates import parse_date_range
from obdal_gateway.state import Gateway

__all__ = ["usage"]

_MAX_DAYS = 366
_GROUPS = ("day", "model", "key")


@get("/v1/usage", summary="Usage of the key's app over a date range")
async def usage(
    request: Request[Any, Any, Any],
    gw: Gateway,
    start_date: str | None = None,
    end_date: str | None = None,
    group_by: str = "day",
    key_id: str | None = None,
) -> dict[str, Any]:
    """Totals and a breakdown by ``day``, ``model`` or ``key`` (UTC days, both ends inclusive;
    default: the last 30 days)."""
    principal = await authenticate(request, gw, scope="usage:read")
    start, end = parse_date_range(start_date, end_date, max_days=_MAX_DAYS)
    if group_by not in _GROUPS:
        raise BadRequest(f"group_by must be one of {', '.join(_GROUPS)}", code="invalid_group_by")
    if key_id is not None and not is_id("key", key_id):
        raise BadRequest("key_id is not a key id", code="invalid_key_id")
    group: UsageGroup = group_by  # type: ignore[assignment]
    report = await nats_request(
        gw.nc,
        subjects.METERING_USAGE,
        UsageQuery(app_id=principal.app_id, start_date=start, end_date=end, group_by=group, key_id=key_id),
        UsageReport,
        timeout=gw.settings.request_timeout_s,
        what="metering",
    )
    body: dict[str, Any] = msgspec.to_builtins(report)
    return body
