"""``/v1/sessions`` and ``/v1/users``: list, read, export and erase the conversations of the key's app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec
from litestar import delete, get
from litestar.response import Stream

from obdal_common.cursors import checked_cursor, checked_limit
from obdal_common.errors import BadRequest, NotFound, ObdalError
from obdal_common.schemas import (
    DeliveriesErase,
    EraseRequest,
    EraseResult,
    HistoryErase,
    SessionExportPage,
    SessionExportQuery,
    SessionLookup,
    SessionQuery,
    encode,
)
from obdal_common.sessions import is_session_id
from obdal_gateway.auth import Principal
from obdal_gateway.dates import day_bounds, parse_date_range
from obdal_gateway.state import Gateway

__all__ = ["checked_user", "delete_session", "delete_user", "export_sessions", "get_session", "list_sessions"]

log = logging.getLogger(__name__)

_MAX_LIMIT = 100
_MAX_USER_CHARS = 256


def _window(
    start_date: str | None, end_date: str | None, include_all: bool
) -> tuple[datetime | None, datetime | None]:
    """The activity window: the given dates, the last 30 days by default, or none with include_all."""
    if include_all:
        if start_date is not None or end_date is not None:
            raise BadRequest("include_all=true cannot be combined with dates", code="invalid_date_range")
        return None, None
    return day_bounds(*parse_date_range(start_date, end_date))


def checked_user(user: str | None) -> str | None:
    """An end user named in a query or path: 1 to 256 characters, as chat accepts."""
    if user is not None and not 1 <= len(user) <= _MAX_USER_CHARS:
        raise BadRequest(f"user must be 1 to {_MAX_USER_CHARS} characters", code="invalid_user")
    return user


@get(
    "/v1/sessions",
    summary="The app's sessions, most recently started first (cursor pagination)",
    opt={"scope": "sessions:read"},
)
async def list_sessions(
    principal: Principal,
    gw: Gateway,
    limit: int = 20,
    cursor: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    user: str | None = None,
    include_all: bool = False,
) -> dict[str, Any]:
    """Sessions active within ``start_date``..``end_date`` (UTC days, inclusive; default the last
    30 days, or every session with ``include_all=true``), optionally of one end ``user``. Pass
    ``next_cursor`` back as ``cursor`` for the next page; each session appears exactly once."""
    checked_limit(limit, most=_MAX_LIMIT)
    start, end = _window(start_date, end_date, include_all)
    query = SessionQuery(
        app_id=principal.app_id,
        limit=limit,
        cursor=checked_cursor(cursor),
        start=start,
        end=end,
        user=checked_user(user),
    )
    page = await gw.metering.sessions(query)
    return {"sessions": msgspec.to_builtins(page.data), "next_cursor": page.next_cursor}


async def _ndjson(gw: Gateway, query: SessionExportQuery, first: SessionExportPage) -> AsyncIterator[bytes]:
    page = first
    while True:
        for session in page.sessions:
            yield encode(session) + b"\n"
        if page.next_cursor is None:
            return
        try:
            query = msgspec.structs.replace(query, cursor=page.next_cursor)
            page = await gw.metering.export(query)
        except ObdalError as exc:
            # The status line is long gone: say so in-band, as the last line, instead of ending silently.
            log.warning("session export of %s cut short: %s", query.app_id, exc.message)
            yield encode({"error": exc.to_dict()}) + b"\n"
            return


@get(
    "/v1/sessions/export",
    summary="Every session in a date range, as newline-delimited JSON (streamed)",
    media_type="application/x-ndjson",
    opt={"scope": "sessions:read"},
)
async def export_sessions(
    principal: Principal,
    gw: Gateway,
    start_date: str | None = None,
    end_date: str | None = None,
    user: str | None = None,
    include_all: bool = False,
) -> Stream:
    """One JSON object per line, one line per session with all its messages, in the order of
    ``GET /v1/sessions``; read page by page from metering while the response is written."""
    start, end = _window(start_date, end_date, include_all)
    query = SessionExportQuery(app_id=principal.app_id, start=start, end=end, user=checked_user(user))
    # The first page is fetched before the response starts, so an early failure is a proper error status.
    first = await gw.metering.export(query)
    return Stream(
        _ndjson(gw, query, first),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="sessions.ndjson"'},
    )


@get("/v1/sessions/{session_id:str}", summary="Every message of one session", opt={"scope": "sessions:read"})
async def get_session(principal: Principal, gw: Gateway, session_id: str) -> dict[str, Any]:
    """Messages oldest first, with role, content, timestamp, and each answer's usage and sources."""
    if not is_session_id(session_id):
        raise NotFound(f"no session {session_id}", code="session_not_found")
    lookup = SessionLookup(app_id=principal.app_id, session_id=session_id)
    detail = await gw.metering.session(lookup)
    body: dict[str, Any] = msgspec.to_builtins(detail)
    return body


async def _erase(gw: Gateway, erase: EraseRequest) -> tuple[EraseResult, int]:
    """Each owner erases its own: metering the stored turns, then the chat their working
    context, then the webhooks service the deliveries that carry them; the result and how many
    sessions' context was forgotten."""
    result = await gw.metering.erase(erase)
    session_ids = set(result.session_ids)
    if erase.session_id is not None:
        session_ids.add(erase.session_id)  # the context may exist before its first turn is stored
    if not session_ids:
        return result, 0
    # Stored content is gone already; erasure is idempotent, so a client whose chat erasure
    # failed (503) can safely retry.
    forgotten = await gw.chat.erase_history(
        HistoryErase(app_id=erase.app_id, session_ids=sorted(session_ids))
    )
    # Webhook deliveries carry the conversation too (questions, answers, feedback comments).
    await gw.webhooks.erase_sessions(DeliveriesErase(app_id=erase.app_id, session_ids=sorted(session_ids)))
    return result, forgotten.sessions_erased


@delete(
    "/v1/sessions/{session_id:str}",
    status_code=200,
    summary="Erase one session",
    opt={"scope": "sessions:write"},
)
async def delete_session(principal: Principal, gw: Gateway, session_id: str) -> dict[str, Any]:
    """Removes the session's messages from storage and its context from the cache; the next chat
    with this id starts fresh. Usage totals stay (they hold no content)."""
    if not is_session_id(session_id):
        raise NotFound(f"no session {session_id}", code="session_not_found")
    result, removed = await _erase(gw, EraseRequest(app_id=principal.app_id, session_id=session_id))
    if not result.session_ids and not removed:
        raise NotFound(f"no session {session_id}", code="session_not_found")
    await gw.audit.record(
        "session.deleted",
        app_id=principal.app_id,
        actor=principal.key_id,
        target=session_id,
        detail={"messages_erased": str(result.messages_erased)},
    )
    return {"session_id": session_id, "deleted": True, "messages_erased": result.messages_erased}


@delete(
    "/v1/users/{user:str}",
    status_code=200,
    summary="Erase every session of one end user",
    opt={"scope": "sessions:write"},
)
async def delete_user(principal: Principal, gw: Gateway, user: str) -> dict[str, Any]:
    """Erases every session in which ``user`` (the ``user`` field of chat requests) took part.
    Answers 200 even when there was nothing to erase, so a retry is harmless."""
    result, _ = await _erase(gw, EraseRequest(app_id=principal.app_id, user=checked_user(user)))
    await gw.audit.record(
        "user.erased",
        app_id=principal.app_id,
        actor=principal.key_id,
        target=user,
        detail={
            "sessions_erased": str(len(result.session_ids)),
            "messages_erased": str(result.messages_erased),
        },
    )
    return {
        "user": user,
        "sessions_erased": result.session_ids,
        "messages_erased": result.messages_erased,
    }
