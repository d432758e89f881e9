"""``GET /v1/usage``: requests, tokens and cost of the key's app."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
from litestar import Request, get

from obdal_common import subjects
from obdal_common.errors import BadRequest
from obdal_common.ids import is_id
from obdal_common.messaging import request as nats_request
from obdal_common.schemas import UsageGroup, UsageQuery, UsageReport
from obdal_gateway.auth import authenticate
from obdal_gateway.state import Gateway

__all__ = ["usage"]

_DEFAULT_DAYS = 30
_MAX_DAYS = 366
_GROUPS = ("day", "model", "key")


def _date(name: str, value: str | None, default: date) -> date:
    if value is None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"{name} must be an ISO date (YYYY-MM-DD), got {value!r}", code="invalid_date"
        ) from None


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
    today = datetime.now(UTC).date()
    end = _date("end_date", end_date, today)
    start = _date("start_date", start_date, end - timedelta(days=_DEFAULT_DAYS - 1))
    if start > end:
        raise BadRequest("start_date is after end_date", code="invalid_date_range")
    if (end - start).days >= _MAX_DAYS:
        raise BadRequest(f"a usage query covers at most {_MAX_DAYS} days", code="invalid_date_range")
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
