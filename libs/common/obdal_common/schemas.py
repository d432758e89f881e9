"""Messages and events: the only contract between Obdal services.

Every message that crosses NATS is one of these msgspec structs, encoded as
JSON. Structs are frozen; adding an optional field is a compatible change,
renaming or removing one is not.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal, TypeAlias, TypeVar

import msgspec

__all__ = [
    "AppRecord",
    "AuditEvent",
    "ChatAccepted",
    "ChatDelta",
    "ChatEnd",
    "ChatError",
    "ChatPing",
    "ChatReply",
    "ChatRequest",
    "ChatSources",
    "DependencyStatus",
    "ErrorReply",
    "FileState",
    "FileStatus",
    "IngestDelete",
    "IngestDeleteApp",
    "IngestDeleted",
    "IngestJob",
    "KeyKind",
    "KeyRecord",
    "ServiceStatus",
    "Source",
    "TurnEvent",
    "Usage",
    "UsageBucket",
    "UsageEvent",
    "UsageGroup",
    "UsageQuery",
    "UsageReport",
    "decode",
    "decode_chat_reply",
    "encode",
]

KeyKind: TypeAlias = Literal["secret", "publishable"]
FileState: TypeAlias = Literal["queued", "processing", "ready", "failed"]
UsageGroup: TypeAlias = Literal["day", "model", "key"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode(obj: Any) -> bytes:
    """Encode a schema object (or plain JSON data) as JSON bytes."""
    return _encoder.encode(obj)


def decode(data: bytes, typ: type[T]) -> T:
    """Decode JSON bytes into ``typ``; raises ``msgspec.ValidationError`` on mismatch."""
    return msgspec.json.decode(data, type=typ)


# --- apps and keys (NATS KV) -------------------------------------------------


class AppRecord(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    name: str
    created_at: datetime


class KeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A stored API key. The secret itself is never stored, only its SHA-256."""

    key_id: str
    app_id: str
    name: str
    kind: KeyKind
    scopes: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    secret_hash: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    rate_limit_rpm: int | None = None
    token_budget: int | None = None


# --- chat (request/reply stream) -----------------------------------------------


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    app_id: str
    key_id: str
    session_id: str
    message: str
    stream: bool = True
    user: str | None = None


class Source(msgspec.Struct, frozen=True, kw_only=True):
    file_id: str
    filename: str
    snippet: str
    score: float
    page: int | None = None


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float


class ChatAccepted(msgspec.Struct, frozen=True, kw_only=True, tag="accepted"):
    """First reply: a worker has taken the request."""

    worker_id: str


class ChatDelta(msgspec.Struct, frozen=True, kw_only=True, tag="delta"):
    content: str


class ChatSources(msgspec.Struct, frozen=True, kw_only=True, tag="sources"):
    sources: list[Source]


class ChatPing(msgspec.Struct, frozen=True, kw_only=True, tag="ping"):
    """Sent while the model is slow, so the gateway knows the worker is alive."""


class ChatEnd(msgspec.Struct, frozen=True, kw_only=True, tag="end"):
    session_id: str
    message_id: str
    model: str
    usage: Usage


class ChatError(msgspec.Struct, frozen=True, kw_only=True, tag="error"):
    code: str
    message: str
    status: int = 500


ChatReply: TypeAlias = ChatAccepted | ChatDelta | ChatSources | ChatPing | ChatEnd | ChatError
_chat_replies = msgspec.json.Decoder(ChatReply)


def decode_chat_reply(data: bytes) -> ChatReply:
    """Decode one message of a chat reply stream."""
    reply: ChatReply = _chat_replies.decode(data)
    return reply


# --- events (JetStream, into metering) -----------------------------------------


class UsageEvent(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    app_id: str
    key_id: str
    session_id: str
    message_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float
    occurred_at: datetime


class TurnEvent(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    app_id: str
    key_id: str
    session_id: str
    message_id: str
    user_message: str
    answer: str
    sources: list[Source]
    usage: Usage
    occurred_at: datetime
    user: str | None = None


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    action: str
    occurred_at: datetime
    app_id: str | None = None
    actor: str | None = None
    target: str | None = None
    detail: dict[str, str] = msgspec.field(default_factory=dict)


# --- ingest --------------------------------------------------------------------


class IngestJob(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    file_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    object_name: str
    version: int = 1


class FileStatus(msgspec.Struct, frozen=True, kw_only=True):
    file_id: str
    app_id: str
    filename: str
    status: FileState
    size: int
    content_type: str
    sha256: str
    created_at: datetime
    updated_at: datetime
    chunks: int = 0
    error: str | None = None
    version: int = 1
    progress: int = 0
    tokens: int = 0
    pages: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class IngestDelete(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    file_id: str


class IngestDeleted(msgspec.Struct, frozen=True, kw_only=True):
    file_id: str
    vectors_deleted: int


class IngestDeleteApp(msgspec.Struct, frozen=True, kw_only=True):
    """Erase every vector of an app (answered with an :class:`IngestDeleted` whose file_id is ``*``)."""

    app_id: str


# --- metering queries ------------------------------------------------------------


class UsageQuery(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    start_date: date
    end_date: date
    group_by: UsageGroup = "day"
    key_id: str | None = None


class UsageBucket(msgspec.Struct, frozen=True, kw_only=True):
    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float


class UsageReport(msgspec.Struct, frozen=True, kw_only=True):
    start_date: date
    end_date: date
    group_by: UsageGroup
    total_requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    total_cost: float
    breakdown: list[UsageBucket]


# --- health and errors -----------------------------------------------------------


class DependencyStatus(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    detail: str = ""


class ServiceStatus(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    ok: bool
    dependencies: dict[str, DependencyStatus] = msgspec.field(default_factory=dict)


class ErrorReply(msgspec.Struct, frozen=True, kw_only=True):
    """Body of a request/reply answer that failed (sent with the error header)."""

    code: str
    message: str
    status: int
