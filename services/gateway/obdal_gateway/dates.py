"""Date-range query parameters (``start_date``, ``end_date``): ISO dates, UTC days, both ends inclusive.

Any range is allowed: ``start_date`` alone means from that day through today, however long ago
it was (the product page's ``GET /v1/usage?start_date=2024-01-01``). What a long range could make
large is paged by the endpoint itself, never refused here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from obdal_common.errors import BadRequest

__all__ = ["DEFAULT_DAYS", "day_bounds", "parse_date_range"]

DEFAULT_DAYS = 30
# The day after the last one must still be a date (day_bounds' exclusive end).
_LAST = date.max - timedelta(days=1)


def _date(name: str, value: str | None, default: date) -> date:
    if value is None:
        return default
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"{name} must be an ISO date (YYYY-MM-DD), got {value!r}", code="invalid_date"
        ) from None
    if parsed > _LAST:
        raise BadRequest(f"{name} must be on or before {_LAST.isoformat()}", code="invalid_date")
    return parsed


def parse_date_range(start_date: str | None, end_date: str | None) -> tuple[date, date]:
    """The validated range; ``end_date`` defaults to today, ``start_date`` to 30 days before it."""
    end = _date("end_date", end_date, datetime.now(UTC).date())
    default_start = date.fromordinal(max(1, end.toordinal() - (DEFAULT_DAYS - 1)))
    start = _date("start_date", start_date, default_start)
    if start > end:
        raise BadRequest("start_date is after end_date", code="invalid_date_range")
    return start, end


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """``[start 00:00, the day after end 00:00)`` in UTC."""
    return (
        datetime.combine(start, time.min, tzinfo=UTC),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC),
    )
