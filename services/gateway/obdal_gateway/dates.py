"""Date-range query parameters (``start_date``, ``end_date``): ISO dates, UTC days, both ends inclusive."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from obdal_common.errors import BadRequest

__all__ = ["DEFAULT_DAYS", "day_bounds", "parse_date_range"]

DEFAULT_DAYS = 30


def _date(name: str, value: str | None, default: date) -> date:
    if value is None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"{name} must be an ISO date (YYYY-MM-DD), got {value!r}", code="invalid_date"
        ) from None


def parse_date_range(
    start_date: str | None, end_date: str | None, *, max_days: int | None = None
) -> tuple[date, date]:
    """The validated range; ``end_date`` defaults to today, ``start_date`` to 30 days before it."""
    end = _date("end_date", end_date, datetime.now(UTC).date())
    start = _date("start_date", start_date, end - timedelta(days=DEFAULT_DAYS - 1))
    if start > end:
        raise BadRequest("start_date is after end_date", code="invalid_date_range")
    if max_days is not None and (end - start).days >= max_days:
        raise BadRequest(f"a query covers at most {max_days} days", code="invalid_date_range")
    return start, end


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """``[start 00:00, the day after end 00:00)`` in UTC."""
    return (
        datetime.combine(start, time.min, tzinfo=UTC),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC),
    )
