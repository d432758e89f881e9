"""``/v1/messages/{id}/feedback`` and ``/v1/feedback``: rate an answer, list the app's ratings."""

from __future__ import annotations

from typing import Any, get_args

import msgspec
from litestar import get, post
from litestar.openapi import ResponseSpec

from obdal_common.contract import Metering
from obdal_common.cursors import checked_cursor, checked_limit
from obdal_common.errors import BadRequest, NotFound, PayloadTooLarge, UnprocessableContent
from obdal_common.ids import is_id
from obdal_common.schemas import FeedbackQuery, FeedbackRating, FeedbackReason, FeedbackSet
from obdal_common.sessions import is_session_id
from obdal_gateway.auth import Principal
from obdal_gateway.dates import day_bounds, parse_date_range
from obdal_gateway.routes.sessions import checked_user
from obdal_gateway.state import Gateway

__all__ = ["FeedbackBody", "list_feedback", "rate_message"]

_RATINGS: tuple[str, ...] = get_args(FeedbackRating)
_REASONS: tuple[str, ...] = get_args(FeedbackReason)
_MAX_COMMENT_CHARS = 2000
_MAX_LIMIT = 100
# Room for a 2,000-character comment even if every character is JSON-escaped (\uXXXX\uXXXX).
_BODY_MAX_BYTES = 32 * 1024
# How long metering waits for the rated turn to be stored: a widget rates as soon as the answer
# ends, and the turn event is consumed ~60 ms later (p50).
_TURN_WAIT_S = 3.0


class FeedbackBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A rating of one answer. ``rating`` and ``reason`` are plain strings here so that an unknown
    value is the handler's 422 ``invalid_feedback``, not a body validation 400."""

    rating: str
    reason: str | None = None
    comment: str | None = None
    session_id: str | None = None


def _not_found(message_id: str) -> NotFound:
    return NotFound(f"no answer {message_id}", code="message_not_found")


@post(
    "/v1/messages/{message_id:str}/feedback",
    status_code=200,
    summary="Rate an answer (a second rating replaces the first)",
    opt={"scope": "chat"},
    request_max_body_size=_BODY_MAX_BYTES,
    responses={
        422: ResponseSpec(
            data_container=dict[str, Any],
            description="`invalid_feedback`: a `rating` or `reason` that is not one of the listed values",
        )
    },
)
async def rate_message(
    principal: Principal, gw: Gateway, message_id: str, data: FeedbackBody
) -> dict[str, Any]:
    """``rating`` ``up`` or ``down``, an optional ``reason`` and ``comment`` (at most 2,000
    characters). A publishable key must name the answer's ``session_id``; a secret key may."""
    if data.rating not in _RATINGS:
        raise UnprocessableContent(f"rating must be one of {', '.join(_RATINGS)}", code="invalid_feedback")
    if data.reason is not None and data.reason not in _REASONS:
        raise UnprocessableContent(f"reason must be one of {', '.join(_REASONS)}", code="invalid_feedback")
    if data.comment is not None and len(data.comment) > _MAX_COMMENT_CHARS:
        raise PayloadTooLarge(
            f"comment is longer than {_MAX_COMMENT_CHARS} characters", code="comment_too_long"
        )
    # The session id is the widget visitor's secret: it is what lets a publishable key rate.
    if principal.key.kind == "publishable" and data.session_id is None:
        raise BadRequest("a publishable key must name the answer's session_id", code="session_id_required")
    if not is_id("msg", message_id) or (data.session_id is not None and not is_session_id(data.session_id)):
        raise _not_found(message_id)
    request = FeedbackSet(
        app_id=principal.app_id,
        message_id=message_id,
        rating=data.rating,  # type: ignore[arg-type]  # checked above
        reason=data.reason,  # type: ignore[arg-type]
        comment=data.comment if data.comment and data.comment.strip() else None,
        session_id=data.session_id,
        wait_s=_TURN_WAIT_S,
    )
    record = await gw.metering.feedback(request, timeout=_TURN_WAIT_S + Metering.feedback.timeout)
    body: dict[str, Any] = msgspec.to_builtins(record)
    # One event per rating as it stands (a changed rating is a new one).
    await gw.audit.hook(
        "feedback.created",
        app_id=principal.app_id,
        data={k: body[k] for k in ("message_id", "session_id", "rating", "reason", "comment")},
        event_id=f"feedback.{record.message_id}.{int(record.updated_at.timestamp() * 1000)}",
    )
    return body


@get(
    "/v1/feedback",
    summary="The app's ratings of answers, newest first (cursor pagination)",
    opt={"scope": "sessions:read"},
)
async def list_feedback(
    principal: Principal,
    gw: Gateway,
    rating: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    user: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Ratings first given within ``start_date``..``end_date`` (UTC days, inclusive; default the
    last 30 days), optionally only ``up`` or ``down`` ones or one end ``user``'s, each with the
    question and answer it rates. Pass ``next_cursor`` back as ``cursor``; each appears once."""
    if rating is not None and rating not in _RATINGS:
        raise BadRequest(f"rating must be one of {', '.join(_RATINGS)}", code="invalid_rating")
    checked_limit(limit, most=_MAX_LIMIT)
    start, end = day_bounds(*parse_date_range(start_date, end_date))
    query = FeedbackQuery(
        app_id=principal.app_id,
        limit=limit,
        cursor=checked_cursor(cursor),
        start=start,
        end=end,
        user=checked_user(user),
        rating=rating,  # type: ignore[arg-type]  # checked above
    )
    page = await gw.metering.feedback_list(query)
    body: dict[str, Any] = msgspec.to_builtins(page)
    return body
