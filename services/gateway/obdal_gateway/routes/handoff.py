"""Handing a session to a person (docs/handoff.md): the customer's request, the person's replies and
resolution, and the event stream the open widget reads them from.

Metering stores all of it and tells the session's streams over core NATS once a change is stored;
a stream subscribes before it reads what is stored, so nothing stored in between is missed, and
drops by id what it was told twice.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncGenerator, Callable
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, get, post
from litestar.openapi import ResponseSpec
from litestar.response import Stream
from nats.aio.subscription import Subscription

from obdal_common import subjects
from obdal_common.contract import Metering
from obdal_common.errors import BadRequest, Forbidden, NotFound, UnprocessableContent
from obdal_common.ids import is_id
from obdal_common.schemas import (
    AgentMessage,
    AgentMessageCreate,
    ContactDetails,
    HandoffConfig,
    HandoffRecord,
    HandoffRequest,
    HandoffResolve,
    LiveEvent,
    LiveReply,
    SessionEventsQuery,
    encode,
)
from obdal_common.sessions import is_session_id
from obdal_gateway.auth import Principal
from obdal_gateway.routes.chat import SSE_HEADERS
from obdal_gateway.routes.handoff_settings import checked_email
from obdal_gateway.sse import PING, sse_event, sse_response
from obdal_gateway.state import Gateway

__all__ = ["HANDOFF_HANDLERS"]

# How long a handoff right after an answer waits for that answer's turn to be stored.
_TURN_WAIT_S = 3.0
_MAX_REPLY_CHARS = 8000
# A stream ends after this long and the browser reconnects (with Last-Event-ID): no connection
# is held for ever by a tab left open.
_STREAM_S = 30 * 60.0
_LIVE = msgspec.json.Decoder(LiveEvent)


class ContactBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(max_length=254)] | None = None
    name: Annotated[str, msgspec.Meta(max_length=120)] | None = None


class HandoffBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    contact: ContactBody | None = None


class ReplyBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``role`` is a plain string so that another role is the handler's 422, not a body 400."""

    role: str
    content: Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_REPLY_CHARS)]
    name: Annotated[str, msgspec.Meta(max_length=80)] | None = None


def _documented(**described: str) -> dict[int, ResponseSpec]:
    """The route's own error statuses (``_409="…"``), with the JSON error body."""
    return {
        int(status.lstrip("_")): ResponseSpec(data_container=dict[str, Any], description=text)
        for status, text in described.items()
    }


def _session(session_id: str) -> str:
    if not is_session_id(session_id):
        raise NotFound(f"no session {session_id}", code="session_not_found")
    return session_id


def _text(value: str | None) -> str | None:
    return (value.strip() or None) if value is not None else None


def _contact(data: HandoffBody, config: HandoffConfig, *, from_widget: bool) -> ContactDetails | None:
    given = data.contact or ContactBody()
    email = _text(given.email)
    if email is not None:
        email = checked_email(email, code="invalid_contact")
    elif from_widget and config.ask_contact == "required":
        raise UnprocessableContent("this app needs an e-mail address to reach you", code="contact_required")
    name = _text(given.name)
    return None if email is None and name is None else ContactDetails(email=email, name=name)


def _view(record: HandoffRecord) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(record)
    return body


def _reply_view(message: AgentMessage) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "role": "agent",
        "content": message.content,
        "name": message.name,
        "timestamp": message.timestamp.isoformat(),
    }


@post(
    "/v1/sessions/{session_id:str}/handoff",
    status_code=200,
    summary="Hand a conversation to a person",
    opt={"scope": "chat"},
    request_max_body_size=8 * 1024,
    responses=_documented(
        _409="`handoff_busy`: another request is opening this session's handoff; retry",
        _422="`contact_required` (the app needs an e-mail address), `invalid_contact`",
    ),
)
async def request_handoff(
    principal: Principal, gw: Gateway, session_id: str, data: HandoffBody | None = None
) -> dict[str, Any]:
    """An optional ``reason`` and the customer's ``contact`` (``email``, ``name``); asking again
    while the handoff is open answers it. A publishable key hands off its own session (the id is
    the proof), and only in an app that turned handoff on (403 ``handoff_off``)."""
    body = data or HandoffBody()
    config = (await gw.apps.get(principal.app_id)).handoff or HandoffConfig()
    from_widget = principal.key.kind == "publishable"
    if from_widget and not config.enabled:
        raise Forbidden("this app does not hand conversations to people", code="handoff_off")
    request = HandoffRequest(
        app_id=principal.app_id,
        session_id=_session(session_id),
        key_id=principal.key_id,
        reason=_text(body.reason),
        contact=_contact(body, config, from_widget=from_widget),
        wait_s=_TURN_WAIT_S,
    )
    record = await gw.metering.handoff(request, timeout=_TURN_WAIT_S + Metering.handoff.timeout)
    return _view(record)


@post(
    "/v1/sessions/{session_id:str}/handoff/resolve",
    status_code=200,
    summary="Mark a handed-off conversation resolved (the assistant answers again)",
    opt={"scope": "handoff"},
    responses=_documented(_409="`handoff_not_open`: the session has no open handoff"),
)
async def resolve_handoff(principal: Principal, gw: Gateway, session_id: str) -> dict[str, Any]:
    """409 ``handoff_not_open`` when the session has no open handoff."""
    request = HandoffResolve(
        app_id=principal.app_id, session_id=_session(session_id), key_id=principal.key_id
    )
    return _view(await gw.metering.resolve_handoff(request))


@post(
    "/v1/sessions/{session_id:str}/messages",
    status_code=201,
    summary="Reply to a conversation as a person",
    opt={"scope": "handoff"},
    request_max_body_size=64 * 1024,
    responses=_documented(_422="`invalid_role` (only `agent`), `empty_message`"),
)
async def post_reply(principal: Principal, gw: Gateway, session_id: str, data: ReplyBody) -> dict[str, Any]:
    """``role`` ``agent``, the ``content`` (1 to 8,000 characters) and the ``name`` the customer
    sees above it; the open widget shows it at once."""
    if data.role != "agent":
        raise UnprocessableContent("role must be 'agent'", code="invalid_role")
    if not data.content.strip():
        raise UnprocessableContent("content must not be empty", code="empty_message")
    message = await gw.metering.agent_message(
        AgentMessageCreate(
            app_id=principal.app_id,
            session_id=_session(session_id),
            key_id=principal.key_id,
            content=data.content,
            name=_text(data.name),
        )
    )
    return _reply_view(message)


def _handoff_event(record: HandoffRecord | None) -> bytes:
    status: Literal["requested", "resolved", "none"] = "none" if record is None else record.status
    return sse_event(
        "handoff", encode({"status": status, "handoff_id": None if record is None else record.handoff_id})
    )


async def _stream(
    sub: Subscription,
    first: bytes,
    replies: list[AgentMessage],
    *,
    ping_s: float,
    release: Callable[[], None],
) -> AsyncGenerator[bytes, None]:
    seen: set[str] = set()
    try:
        yield first
        for message in replies:
            seen.add(message.message_id)
            yield sse_event("message", encode(_reply_view(message)), event_id=message.message_id)
        ends = time.monotonic() + _STREAM_S
        while (left := ends - time.monotonic()) > 0:
            try:
                msg = await sub.next_msg(timeout=min(ping_s, left))
            except TimeoutError:
                yield PING
                continue
            event: LiveEvent = _LIVE.decode(msg.data)
            if isinstance(event, LiveReply):
                if event.message.message_id in seen:
                    continue
                seen.add(event.message.message_id)
                yield sse_event(
                    "message", encode(_reply_view(event.message)), event_id=event.message.message_id
                )
            else:
                yield _handoff_event(event.handoff)
    finally:
        release()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


@get(
    "/v1/sessions/{session_id:str}/events",
    summary="A conversation's people's replies and handoff, as server-sent events",
    opt={"scope": "chat"},
    media_type="text/event-stream",
)
async def session_events(
    request: Request[Any, Any, Any],
    principal: Principal,
    gw: Gateway,
    session_id: str,
    after: str | None = None,
) -> Stream:
    """``handoff`` first and on every change, then ``message`` (with ``id:``) for each reply
    stored after ``Last-Event-ID`` (or ``after``; every reply without either), then live ones."""
    _session(session_id)
    last = request.headers.get("last-event-id") or after
    if last is not None and not is_id("msg", last):
        raise BadRequest("after must be the id of a reply (msg_…)", code="invalid_after")
    # Held until the stream ends (the generator's finally), or given back here if it never starts.
    gw.session_streams.take(principal.app_id, session_id)
    release = functools.partial(gw.session_streams.give_back, principal.app_id, session_id)
    sub: Subscription | None = None
    try:
        # Subscribed before reading: a reply stored in between arrives twice, not never.
        sub = await gw.nc.subscribe(subjects.live_subject(principal.app_id, session_id))
        stored = await gw.metering.session_events(
            SessionEventsQuery(app_id=principal.app_id, session_id=session_id, after=last)
        )
    except BaseException:
        release()
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        raise
    events = _stream(
        sub, _handoff_event(stored.handoff), stored.messages, ping_s=gw.settings.sse_ping_s, release=release
    )
    return sse_response(events, headers=SSE_HEADERS)


HANDOFF_HANDLERS = [request_handoff, resolve_handoff, post_reply, session_events]
