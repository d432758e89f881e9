"""``POST /v1/chat``: grounded answers, as JSON or as a server-sent event stream."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, post
from litestar.di import Provide
from litestar.response import Stream

from obdal_common.errors import BadRequest, PayloadTooLarge
from obdal_common.ids import new_id
from obdal_common.schemas import (
    ChatDelta,
    ChatEnd,
    ChatError,
    ChatRequest,
    ChatSources,
    Source,
    encode,
)
from obdal_common.sessions import SESSION_ID_PATTERN
from obdal_gateway.auth import Principal, authenticate, check_budget, required_scope
from obdal_gateway.identity import end_user
from obdal_gateway.relay import ChatStream
from obdal_gateway.sse import PING, sse_event, sse_response
from obdal_gateway.state import Gateway

__all__ = ["CHAT_BODY_MAX_BYTES", "SSE_HEADERS", "ChatBody", "chat", "public_sources"]

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# A chat body, history included, must fit one NATS message (1 MB by default) once it is a
# ChatRequest: beyond this it is a 413 here, not a 503 from the bus.
CHAT_BODY_MAX_BYTES = 768 * 1024


class ChatBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A chat turn. A missing ``session_id`` starts a new session."""

    message: str
    session_id: Annotated[str, msgspec.Meta(pattern=SESSION_ID_PATTERN)] | None = None
    stream: bool = False
    user: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    # Hex HMAC-SHA256 of ``user`` under the app's identity secret (docs/identity.md): a
    # publishable key's ``user`` counts only with it.
    user_hash: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    # A solved proof-of-work challenge (``GET /v1/widget/challenge``), for keys that ask for one.
    altcha: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    api_key: str | None = None


def public_sources(sources: list[Source]) -> list[dict[str, Any]]:
    """Sources as every chat route shows them: a passage as it always was (``file_id``,
    ``filename``, ``snippet``, ``score``, ``page``), a curated answer with ``kind`` and ``answer_id``."""
    shown: list[dict[str, Any]] = msgspec.to_builtins(sources)
    for source in shown:
        if source["kind"] == "passage":
            del source["kind"], source["answer_id"]
    return shown


def _end_payload(end: ChatEnd) -> dict[str, Any]:
    payload = {
        "session_id": end.session_id,
        "message_id": end.message_id,
        "usage": msgspec.to_builtins(end.usage),
        "answered": end.answered,
    }
    if end.handed_off:  # only then: every other answer stays exactly as the product page prints it
        payload["handed_off"] = True
    return payload


async def _events(stream: ChatStream, *, ping_s: float) -> AsyncGenerator[bytes, None]:
    last_sent = time.monotonic()
    try:
        async for reply in stream:
            if isinstance(reply, ChatDelta):
                yield sse_event("message", encode({"content": reply.content}))
            elif isinstance(reply, ChatSources):
                yield sse_event("sources", encode({"sources": public_sources(reply.sources)}))
            elif isinstance(reply, ChatEnd):
                yield sse_event("end", encode(_end_payload(reply)))
            elif isinstance(reply, ChatError):
                yield sse_event("error", encode({"code": reply.code, "message": reply.message}))
            elif time.monotonic() - last_sent >= ping_s:  # a worker ping while nothing flows
                yield PING
            else:
                continue
            last_sent = time.monotonic()
    finally:
        # Also runs when the client disconnects: the worker is told to stop.
        await stream.close()


async def _principal_from_body(request: Request[Any, Any, Any], gw: Gateway, data: ChatBody) -> Principal:
    """This route's ``principal``: the key may be the body's ``api_key``, so the body is
    validated first, then the key checked for the route's scope."""
    return await authenticate(request, gw, scope=required_scope(request), body_key=data.api_key)


@post(
    "/v1/chat",
    status_code=200,
    summary="Ask a question about the app's documents",
    opt={"scope": "chat"},
    dependencies={"principal": Provide(_principal_from_body)},
    request_max_body_size=CHAT_BODY_MAX_BYTES,
)
async def chat(data: ChatBody, gw: Gateway, principal: Principal) -> Response[dict[str, Any]] | Stream:
    """Answer from the app's documents. ``stream: true`` answers with SSE:
    ``message`` events (text deltas), ``sources``, then ``end`` (session, message id, usage, and
    ``answered``: false when nothing in the documents was relevant and the question was declined;
    ``handed_off``: true, with no text, while the session waits for a person, docs/handoff.md);
    a failure after the stream started is an ``error`` event."""
    await check_budget(gw, principal)
    if len(data.message) > gw.settings.max_message_chars:
        raise PayloadTooLarge(
            f"message is longer than {gw.settings.max_message_chars} characters", code="message_too_long"
        )
    if not data.message.strip():
        raise BadRequest("message must not be empty", code="empty_message")
    user = await end_user(gw, principal, data.user, data.user_hash)
    if principal.key.proof_of_work:
        await gw.pow.check(principal.key_id, data.altcha)
    chat_request = ChatRequest(
        request_id=new_id("req"),
        app_id=principal.app_id,
        key_id=principal.key_id,
        session_id=data.session_id or new_id("sess"),
        message=data.message,
        user=user,
        token_budget=principal.key.token_budget,
        key_kind=principal.key.kind,
        session_given=data.session_id is not None,
    )
    stream = await gw.relay.open(chat_request, stream=data.stream)
    if data.stream:
        return sse_response(_events(stream, ping_s=gw.settings.sse_ping_s), headers=SSE_HEADERS)
    answer = await stream.collect()
    body = {
        "content": answer.content,
        "sources": public_sources(answer.sources),
        **_end_payload(answer.end),
    }
    return Response(body)
