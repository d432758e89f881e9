"""``POST /v1/chat/completions``: the OpenAI Chat Completions protocol over the same pipeline.

The official OpenAI SDKs work unchanged with ``base_url=<obdal>/v1`` and an Obdal
key. The last message must be the user's question; earlier user and assistant
messages are the conversation (the client keeps it, as with OpenAI). Client
``system`` messages are ignored: the app's system prompt, which tells the model to
answer from the documents only, is not the caller's to replace.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Annotated, Any, Literal

import msgspec
from litestar import Response, post
from litestar.response import ServerSentEvent, ServerSentEventMessage

from obdal_common.errors import BadRequest, PayloadTooLarge
from obdal_common.ids import new_id, new_secret
from obdal_common.schemas import (
    ChatDelta,
    ChatEnd,
    ChatError,
    ChatRequest,
    ChatSources,
    HistoryMessage,
    Source,
    encode,
)
from obdal_gateway.auth import Principal, check_budget
from obdal_gateway.identity import end_user
from obdal_gateway.relay import ChatStream, CollectedAnswer
from obdal_gateway.routes.chat import CHAT_BODY_MAX_BYTES, SSE_HEADERS, public_sources
from obdal_gateway.state import Gateway

__all__ = ["chat_completions"]


class TextPart(msgspec.Struct, kw_only=True):
    type: str
    text: str = ""


class Message(msgspec.Struct, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class CompletionBody(msgspec.Struct, kw_only=True):
    """The fields Obdal uses; other OpenAI parameters are accepted and ignored."""

    messages: list[Message]
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    # As `POST /v1/chat`'s: an end user is named (and so can be erased) or absent, never "".
    user: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None


def _turn(body: CompletionBody, limit: int, *, keep: int) -> tuple[str, list[HistoryMessage]]:
    """The question and the last ``keep`` messages before it: a client-kept history is bounded
    like a stored one, so one request cannot put an unbounded prompt on a key's budget."""
    if not body.messages or body.messages[-1].role != "user":
        raise BadRequest("the last message must be the user's question", code="invalid_messages")
    question = body.messages[-1].text()
    if not question.strip():
        raise BadRequest("the user's message is empty", code="empty_message")
    if len(question) > limit:
        raise PayloadTooLarge(f"message is longer than {limit} characters", code="message_too_long")
    history = [
        HistoryMessage(role=m.role, content=m.text())
        for m in body.messages[:-1]
        if m.role in ("user", "assistant") and m.text()
    ][-keep:]
    if any(len(m.content) > limit for m in history):
        raise PayloadTooLarge(
            f"a message of the history is longer than {limit} characters", code="message_too_long"
        )
    return question, history


class _Chunks:
    """Builders of ``chat.completion.chunk`` objects for one answer."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{new_secret(24)}"
        self.created = int(time.time())
        self.model = model

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            **extra,
        }
        return encode(body).decode()


def _usage(end: ChatEnd) -> dict[str, Any]:
    return {
        "prompt_tokens": end.usage.prompt_tokens,
        "completion_tokens": end.usage.completion_tokens,
        "total_tokens": end.usage.total_tokens,
    }


async def _stream(
    stream: ChatStream, *, model: str, include_usage: bool
) -> AsyncGenerator[ServerSentEventMessage, None]:
    chunks = _Chunks(model)
    sources: list[Source] = []
    try:
        yield ServerSentEventMessage(data=chunks.chunk({"role": "assistant", "content": ""}))
        async for reply in stream:
            if isinstance(reply, ChatDelta):
                yield ServerSentEventMessage(data=chunks.chunk({"content": reply.content}))
            elif isinstance(reply, ChatSources):
                sources = reply.sources
            elif isinstance(reply, ChatEnd):
                yield ServerSentEventMessage(data=chunks.chunk({}, "stop", sources=public_sources(sources)))
                if include_usage:
                    usage = {"id": chunks.id, "object": "chat.completion.chunk", "created": chunks.created}
                    body = {**usage, "model": chunks.model, "choices": [], "usage": _usage(reply)}
                    yield ServerSentEventMessage(data=encode(body).decode())
            elif isinstance(reply, ChatError):
                error = {"error": {"message": reply.message, "type": "api_error", "code": reply.code}}
                yield ServerSentEventMessage(data=encode(error).decode())
                return
        yield ServerSentEventMessage(data="[DONE]")
    finally:
        await stream.close()


def _completion(answer: CollectedAnswer) -> dict[str, Any]:
    chunks = _Chunks(answer.end.model)
    return {
        "id": chunks.id,
        "object": "chat.completion",
        "created": chunks.created,
        "model": answer.end.model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": answer.content}, "finish_reason": "stop"}
        ],
        "usage": _usage(answer.end),
        "sources": public_sources(answer.sources),
    }


@post(
    "/v1/chat/completions",
    status_code=200,
    summary="OpenAI-compatible chat completions",
    opt={"scope": "chat"},
    request_max_body_size=CHAT_BODY_MAX_BYTES,
)
async def chat_completions(
    data: CompletionBody, gw: Gateway, principal: Principal
) -> Response[dict[str, Any]] | ServerSentEvent:
    """Grounded answers in the OpenAI Chat Completions format (JSON, or SSE with ``stream``)."""
    await check_budget(gw, principal)
    if principal.key.proof_of_work:  # the OpenAI format has no place for a solved challenge
        await gw.pow.check(principal.key_id, None)
    question, history = _turn(data, gw.settings.max_message_chars, keep=gw.settings.max_history_messages)
    stream = await gw.relay.open(
        ChatRequest(
            request_id=new_id("req"),
            app_id=principal.app_id,
            key_id=principal.key_id,
            session_id=new_id("sess"),
            message=question,
            user=await end_user(gw, principal, data.user, None),
            history=history,
            token_budget=principal.key.token_budget,
        ),
        stream=data.stream,
    )
    model = data.model or "obdal"
    if data.stream:
        include_usage = bool(data.stream_options and data.stream_options.include_usage)
        return ServerSentEvent(_stream(stream, model=model, include_usage=include_usage), headers=SSE_HEADERS)
    return Response(_completion(await stream.collect()))
