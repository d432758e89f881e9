"""Messages and events: the only contract between Obdal services.

Every message that crosses NATS is one of these msgspec structs, encoded as
JSON. Structs are frozen; adding an optional field is a compatible change,
renaming or removing one is not.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeAlias, TypeVar

import msgspec

__all__ = [
    "AgentMessage",
    "AgentMessageCreate",
    "AnalyticsDay",
    "AnalyticsFigures",
    "AnalyticsQuery",
    "AnalyticsReport",
    "AppRecord",
    "AuditEvent",
    "AuditPage",
    "AuditQuery",
    "ChatAccepted",
    "ChatConfig",
    "ChatDelta",
    "ChatEnd",
    "ChatError",
    "ChatPing",
    "ChatReply",
    "ChatRequest",
    "ChatSources",
    "ChatStarted",
    "ConsoleSession",
    "ContactDetails",
    "ContactPolicy",
    "CuratedAnswer",
    "CuratedAnswerCreate",
    "CuratedAnswerDeleted",
    "CuratedAnswerLookup",
    "CuratedAnswerPage",
    "CuratedAnswerQuery",
    "CuratedAnswerUpdate",
    "CuratedAnswerUse",
    "DeliveriesErase",
    "DeliveriesErased",
    "DeliveryAttempt",
    "DeliveryLookup",
    "DeliveryPage",
    "DeliveryQuery",
    "DeliveryState",
    "DependencyStatus",
    "EraseAppRequest",
    "EraseRequest",
    "EraseResult",
    "ErrorReply",
    "FeedbackItem",
    "FeedbackList",
    "FeedbackQuery",
    "FeedbackRating",
    "FeedbackReason",
    "FeedbackRecord",
    "FeedbackSet",
    "FileAccepted",
    "FileCitations",
    "FileList",
    "FileListQuery",
    "FileLookup",
    "FileOutcomeQuery",
    "FileReplace",
    "FileState",
    "FileStatus",
    "FileUpload",
    "HandoffConfig",
    "HandoffRecord",
    "HandoffRequest",
    "HandoffResolve",
    "HandoffStatus",
    "HistoryErase",
    "HistoryErased",
    "HistoryMessage",
    "HookEvent",
    "HookEventType",
    "IdentitySecret",
    "IngestDelete",
    "IngestDeleteApp",
    "IngestDeleted",
    "IngestJob",
    "KeyKind",
    "KeyRecord",
    "LiveEvent",
    "LiveHandoff",
    "LiveReply",
    "MessageFeedback",
    "OpenHandoff",
    "OperatorRecord",
    "OperatorRole",
    "PageError",
    "PageState",
    "PartialAnswer",
    "QuestionExample",
    "QuestionGroup",
    "RetentionPolicy",
    "RetentionQuery",
    "ServiceStatus",
    "SessionDetail",
    "SessionEvents",
    "SessionEventsQuery",
    "SessionExportPage",
    "SessionExportQuery",
    "SessionLookup",
    "SessionMessage",
    "SessionPage",
    "SessionQuery",
    "SessionSummary",
    "Source",
    "SourceCreate",
    "SourceDeleted",
    "SourceKind",
    "SourceList",
    "SourceListQuery",
    "SourceLookup",
    "SourceMode",
    "SourcePage",
    "SourcePages",
    "SourcePagesQuery",
    "SourceState",
    "StatusQuery",
    "SyncStats",
    "TurnEvent",
    "TurnOutcome",
    "UnansweredPage",
    "UnansweredQuery",
    "Usage",
    "UsageBucket",
    "UsageEvent",
    "UsageGroup",
    "UsageQuery",
    "UsageRecordPage",
    "UsageRecordsQuery",
    "UsageReport",
    "WebhookCreate",
    "WebhookDeleted",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookInfo",
    "WebhookList",
    "WebhookListQuery",
    "WebhookLookup",
    "WebhookRotate",
    "WebhookSecret",
    "WebhookUpdate",
    "WebhooksAppDeleted",
    "WebhooksDeleteApp",
    "WebsiteSource",
    "WidgetConfig",
    "decode",
    "decode_chat_reply",
    "encode",
]

KeyKind: TypeAlias = Literal["secret", "publishable"]
# An operator's role on one app (or on every app, under the key "*"): what the console may do.
OperatorRole: TypeAlias = Literal["viewer", "editor", "owner"]
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


class ChatConfig(msgspec.Struct, frozen=True, kw_only=True):
    """An app's generation settings; ``None`` means the chat worker's default (``OBDAL_CHAT_*``).

    Prices are USD per million tokens and, when set, replace litellm's price map
    (for custom or self-hosted models it does not know).
    """

    model: str | None = None
    system_prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    input_cost_per_mtok: float | None = None
    output_cost_per_mtok: float | None = None


WidgetPosition: TypeAlias = Literal["right", "left"]


class WidgetConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How an app's chat widget looks; ``None`` means the widget's default. A ``data-*``
    attribute on the page's script tag wins over these (docs/widget.md)."""

    title: str | None = None
    greeting: str | None = None
    color: str | None = None
    position: WidgetPosition | None = None
    placeholder: str | None = None


class IdentitySecret(msgspec.Struct, frozen=True, kw_only=True):
    """The secret an app's backend signs its end users' ids with (HMAC-SHA256, docs/identity.md);
    after a rotation the previous one still verifies until ``previous_valid_until``."""

    secret: str
    created_at: datetime
    previous_secret: str | None = None
    previous_valid_until: datetime | None = None


ContactPolicy: TypeAlias = Literal["off", "optional", "required"]


class HandoffConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Whether an app's customers may ask for a person, what the widget asks them for, and where
    the e-mail of a new handoff goes (docs/handoff.md)."""

    enabled: bool = False
    ask_contact: ContactPolicy = "optional"
    notify_email: str | None = None


class AppRecord(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    name: str
    created_at: datetime
    chat: ChatConfig | None = None
    widget: WidgetConfig | None = None
    # Never shown through the API once set (``obdal_gateway.identity.public_app``).
    identity: IdentitySecret | None = None
    handoff: HandoffConfig | None = None


class KeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A stored API key. The secret itself is never stored, only its SHA-256.

    After a rotation the previous secret's hash stays valid until
    ``previous_valid_until`` (the grace period), then stops working.
    """

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
    previous_secret_hash: str | None = None
    previous_valid_until: datetime | None = None
    # Publishable keys only: every question needs a solved challenge (obdal_gateway.proof_of_work).
    proof_of_work: bool = False


class OperatorRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A person who signs in to the console. Only the argon2id hash of the password is stored.

    ``roles`` maps an app id, or ``"*"`` for every app (the instance's owners), to a role.
    ``session_epoch`` grows on every password change: console sessions of an older epoch end.
    """

    operator_id: str
    email: str
    name: str
    password_hash: str
    roles: dict[str, OperatorRole]
    created_at: datetime
    password_changed_at: datetime
    session_epoch: int = 0


class ConsoleSession(msgspec.Struct, frozen=True, kw_only=True):
    """A signed-in browser. Stored under the SHA-256 of its cookie's token, never the token."""

    operator_id: str
    csrf_token: str
    epoch: int
    created_at: datetime
    last_seen_at: datetime


# --- chat (request/reply stream) -----------------------------------------------


class HistoryMessage(msgspec.Struct, frozen=True, kw_only=True):
    role: Literal["user", "assistant"]
    content: str


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A chat turn. ``history`` is the conversation so far when the client keeps it
    (the OpenAI-compatible API); without it the session's stored context is used.

    ``session_given``: the client named the session (else the gateway made a new id); with
    ``key_kind`` it decides whether the turn may start or continue that session
    (docs/sessions.md, "Who may continue a session")."""

    request_id: str
    app_id: str
    key_id: str
    session_id: str
    message: str
    user: str | None = None
    history: list[HistoryMessage] | None = None
    # The key's daily token budget, which the worker reserves each answer's cost against.
    token_budget: int | None = None
    key_kind: KeyKind = "secret"
    session_given: bool = False


# What became of a turn: answered from passages, declined (nothing relevant), small talk
# answered without any, answered with a curated answer, or left to a person (asked while the
# session was handed off: no model ran). Metering keeps it, so unanswered questions can be counted.
TurnOutcome: TypeAlias = Literal["answered", "declined", "smalltalk", "curated", "handed_off"]
SourceKind: TypeAlias = Literal["passage", "curated"]


class Source(msgspec.Struct, frozen=True, kw_only=True):
    """A passage an answer used, or (``kind`` ``curated``, with its ``answer_id``) a curated
    answer; a curated answer's ``file_id``/``filename`` are its source file's, if it names one."""

    file_id: str
    filename: str
    snippet: str
    score: float
    page: int | None = None
    kind: SourceKind = "passage"
    answer_id: str | None = None
    # A website page's address (``filename`` is then its title).
    url: str | None = None


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float


class ChatAccepted(msgspec.Struct, frozen=True, kw_only=True, tag="accepted"):
    """First reply: a worker has taken the request."""


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
    # False when no passage was relevant and the question was declined (small talk is answered).
    answered: bool = True
    # The session is handed off to a person: the assistant kept quiet (docs/handoff.md).
    handed_off: bool = False


class ChatError(msgspec.Struct, frozen=True, kw_only=True, tag="error"):
    code: str
    message: str
    status: int = 500
    # For a 429: seconds before a retry may pass (the gateway's Retry-After).
    retry_after_s: int = 1


class ChatStarted(msgspec.Struct, frozen=True, kw_only=True, tag="started"):
    """Sent before the first delta: what the gateway needs to have an answer metered if its worker dies."""

    message_id: str
    model: str
    prompt_tokens: int
    # The session the turn went to: a publishable key naming a session it may not continue
    # is given a new one.
    session_id: str


ChatReply: TypeAlias = ChatAccepted | ChatDelta | ChatSources | ChatPing | ChatEnd | ChatError | ChatStarted
_chat_replies = msgspec.json.Decoder(ChatReply)


def decode_chat_reply(data: bytes) -> ChatReply:
    """Decode one message of a chat reply stream."""
    reply: ChatReply = _chat_replies.decode(data)
    return reply


class HistoryErase(msgspec.Struct, frozen=True, kw_only=True):
    """Forget the working context of these sessions of one app."""

    app_id: str
    session_ids: list[str]


class HistoryErased(msgspec.Struct, frozen=True, kw_only=True):
    sessions_erased: int


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
    outcome: TurnOutcome = "answered"
    # The question's dense vector (float16, little-endian) by the app's embedder ``embedder``:
    # metering groups similar questions with it (unanswered questions, top questions).
    question_vector: bytes = b""
    embedder: str = ""
    # The curated answer given, when ``outcome`` is ``curated``.
    curated_answer_id: str | None = None


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    action: str
    occurred_at: datetime
    app_id: str | None = None
    actor: str | None = None
    target: str | None = None
    detail: dict[str, str] = msgspec.field(default_factory=dict)


class PartialAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """An answer whose worker died mid-stream, as the gateway relayed it to the client.

    A surviving chat worker counts its tokens and publishes its usage and turn
    events under the ids the dead worker would have used, so nothing is doubled.
    """

    event_id: str
    app_id: str
    key_id: str
    session_id: str
    message_id: str
    model: str
    prompt_tokens: int
    user_message: str
    answer: str
    occurred_at: datetime
    user: str | None = None


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
    url: str | None = None


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
    # The reason of a ``failed`` file as a stable code (``too_many_chunks``, …), next to ``error``'s words.
    error_code: str | None = None
    version: int = 1
    progress: int = 0
    tokens: int = 0
    pages: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Where the bytes of this version are in the object store (internal: never in the public API).
    object_name: str = ""
    # A website source's page: the source, and the page's address (``filename`` is its title).
    source_id: str | None = None
    url: str | None = None


class FileUpload(msgspec.Struct, frozen=True, kw_only=True):
    """A new document whose bytes wait in the object store under ``staged`` (the claim check:
    from this request on, ingest owns them; a duplicate's are deleted)."""

    app_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    staged: str
    source_id: str | None = None
    url: str | None = None


class FileReplace(FileUpload, frozen=True, kw_only=True):
    """New content for the existing file ``file_id``, staged like an upload."""

    file_id: str


class FileAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """The file's status as queued, or the app's existing file with identical content."""

    file: FileStatus
    duplicate: bool = False


class FileLookup(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    file_id: str


class FileListQuery(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str


class FileList(msgspec.Struct, frozen=True, kw_only=True):
    files: list[FileStatus]


class FileOutcomeQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Wait up to ``wait_s`` for ``version`` of the file to end ready or failed."""

    app_id: str
    file_id: str
    version: int
    wait_s: float


class IngestDelete(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    file_id: str


class IngestDeleted(msgspec.Struct, frozen=True, kw_only=True):
    file_id: str
    vectors_deleted: int
    # How many files (status records) went: 1 for a file, the app's count for an app.
    files_deleted: int = 0


class IngestDeleteApp(msgspec.Struct, frozen=True, kw_only=True):
    """Erase every file of an app: vectors, statuses, bytes (answered with an
    :class:`IngestDeleted` whose file_id is ``*``)."""

    app_id: str


# --- website sources (ingest) -------------------------------------------------------

SourceMode: TypeAlias = Literal["crawl", "sitemap", "page"]
SourceState: TypeAlias = Literal["queued", "syncing", "ready", "failed"]
# ``gone``: answered 404/410 once (a second time and it is removed); ``duplicate``: the same main
# content as another page or file of the app (answers cite that one).
PageState: TypeAlias = Literal["indexed", "duplicate", "failed", "blocked", "gone"]


class SourceCreate(msgspec.Struct, frozen=True, kw_only=True):
    """A website to crawl (``POST /v1/sources``); ``resync`` is ``off``, ``daily``, ``weekly`` or a
    five-field cron expression (UTC)."""

    app_id: str
    url: str
    mode: SourceMode = "crawl"
    max_pages: int = 100
    max_depth: int = 3
    include: list[str] = msgspec.field(default_factory=list)
    exclude: list[str] = msgspec.field(default_factory=list)
    resync: str = "off"


class SyncStats(msgspec.Struct, frozen=True, kw_only=True):
    """What one sync did: pages found, sent to indexing (new or changed), unchanged (no
    embedding), duplicates, failed, blocked (robots.txt, noindex), removed (gone twice), and the
    HTTP requests it made."""

    found: int = 0
    indexed: int = 0
    unchanged: int = 0
    duplicate: int = 0
    failed: int = 0
    blocked: int = 0
    removed: int = 0
    requests: int = 0


class PageError(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    code: str
    message: str


class WebsiteSource(msgspec.Struct, frozen=True, kw_only=True):
    """A website source (NATS KV ``obdal_sources``, ingest's). ``pages``/``bytes``: what it holds
    now; ``last_sync``: the last finished sync; ``errors``: that sync's first page failures.
    ``lease_owner``/``lease_until``: the ingest worker syncing it (internal, never in the API)."""

    source_id: str
    app_id: str
    url: str
    mode: SourceMode
    max_pages: int
    max_depth: int
    include: list[str]
    exclude: list[str]
    resync: str
    status: SourceState
    created_at: datetime
    updated_at: datetime
    type: Literal["website"] = "website"
    pages: int = 0
    bytes: int = 0
    progress: SyncStats | None = None
    last_sync: SyncStats | None = None
    last_sync_started_at: datetime | None = None
    last_sync_at: datetime | None = None
    next_sync_at: datetime | None = None
    error: str | None = None
    error_code: str | None = None
    errors: list[PageError] = msgspec.field(default_factory=list)
    lease_owner: str = ""
    lease_until: datetime | None = None


class SourcePage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of a source (NATS KV ``obdal_source_pages``, ingest's): its document (``file_id``,
    the page's own file when ``owns_file``, else the duplicate's holder) and what the next sync
    sends as a conditional request."""

    app_id: str
    source_id: str
    url: str
    status: PageState
    first_seen_at: datetime
    last_seen_at: datetime
    title: str = ""
    file_id: str | None = None
    owns_file: bool = False
    content_type: str = ""
    size: int = 0
    sha256: str = ""
    etag: str | None = None
    last_modified: str | None = None
    misses: int = 0
    error: str | None = None
    error_code: str | None = None
    changed_at: datetime | None = None


class SourceLookup(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    source_id: str


class SourceListQuery(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str


class SourceList(msgspec.Struct, frozen=True, kw_only=True):
    sources: list[WebsiteSource]


class SourcePagesQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A page of a source's pages, in a stable order; ``cursor`` is the previous ``next_cursor``."""

    app_id: str
    source_id: str
    limit: int = 100
    cursor: str | None = None
    status: PageState | None = None


class SourcePages(msgspec.Struct, frozen=True, kw_only=True):
    pages: list[SourcePage]
    next_cursor: str | None = None


class SourceDeleted(msgspec.Struct, frozen=True, kw_only=True):
    source_id: str
    pages_deleted: int
    vectors_deleted: int


# --- curated answers (ingest) -----------------------------------------------------


class CuratedAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """An answer written by the app's people for the questions it answers (NATS KV, ingest's).

    ``vectors``: one dense vector per question, then one of the first question with the answer
    (float16, little-endian) by ``embedder``, so that
    chat workers match questions without embedding the curated ones again; never in the API.
    ``source_filename``: the source file's name when it was last named or renamed, for chat's
    citation (chat cannot read file statuses); never in the API either."""

    answer_id: str
    app_id: str
    questions: list[str]
    answer: str
    created_at: datetime
    updated_at: datetime
    source_file_id: str | None = None
    source_filename: str = ""
    embedder: str = ""
    vectors: list[bytes] = msgspec.field(default_factory=list)


class CuratedAnswerCreate(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    questions: list[str]
    answer: str
    source_file_id: str | None = None


class CuratedAnswerUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """Change some fields of a curated answer (unset ones are kept; a ``None`` source clears it)."""

    app_id: str
    answer_id: str
    questions: list[str] | msgspec.UnsetType = msgspec.UNSET
    answer: str | msgspec.UnsetType = msgspec.UNSET
    source_file_id: str | msgspec.UnsetType | None = msgspec.UNSET


class CuratedAnswerLookup(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    answer_id: str


class CuratedAnswerQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A page of an app's curated answers, most recently updated first."""

    app_id: str
    limit: int = 50
    cursor: str | None = None


class CuratedAnswerPage(msgspec.Struct, frozen=True, kw_only=True):
    answers: list[CuratedAnswer]
    next_cursor: str | None = None


class CuratedAnswerDeleted(msgspec.Struct, frozen=True, kw_only=True):
    answer_id: str


# --- metering queries ------------------------------------------------------------


class UsageQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Totals over the whole range; the breakdown in pages of ``limit`` groups (``None``: all),
    ``cursor`` being the ``next_cursor`` of the previous page."""

    app_id: str
    start_date: date
    end_date: date
    group_by: UsageGroup = "day"
    key_id: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1)] | None = None
    cursor: str | None = None


class UsageRecordsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A page of an app's usage events themselves, oldest first (an app export); ``cursor`` is
    the ``next_cursor`` of the previous page."""

    app_id: str
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 500
    cursor: str | None = None


class UsageRecordPage(msgspec.Struct, frozen=True, kw_only=True):
    records: list[UsageEvent]
    next_cursor: str | None = None


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
    next_cursor: str | None = None
    # Handoffs requested and people's replies in the range (docs/handoff.md).
    handoffs: int = 0
    agent_messages: int = 0


# --- health and errors -----------------------------------------------------------


class StatusQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A health check asks nothing."""


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


# --- audit log queries ------------------------------------------------------------


class AuditQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Newest first; ``before`` is the cursor (the last item of the previous page); ``since``/``until``
    keep the events within ``[since, until)``."""

    limit: int
    app_id: str | None = None
    action: str | None = None
    before_at: datetime | None = None
    before_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AuditEvent]
    has_more: bool


# --- sessions and erasure (metering queries) --------------------------------------


class SessionQuery(msgspec.Struct, frozen=True, kw_only=True):
    """One page of an app's sessions, most recently started first.

    ``start``/``end`` keep the sessions active within ``[start, end)``; ``cursor``
    is the opaque ``next_cursor`` of the previous page.
    """

    app_id: str
    limit: int = 20
    cursor: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    user: str | None = None


class SessionSummary(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    started_at: datetime
    last_at: datetime
    message_count: int
    total_tokens: int
    preview: str
    user: str | None = None
    # The state of the session's latest handoff, if it was ever handed off.
    handoff_status: HandoffStatus | None = None


class SessionPage(msgspec.Struct, frozen=True, kw_only=True):
    data: list[SessionSummary]
    next_cursor: str | None = None


class SessionLookup(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    session_id: str


# --- handing sessions to people (metering; docs/handoff.md) ---------------------------

HandoffStatus: TypeAlias = Literal["requested", "resolved"]


class ContactDetails(msgspec.Struct, frozen=True, kw_only=True):
    """How a person may reach the customer, as the customer gave it."""

    email: str | None = None
    name: str | None = None


class HandoffRecord(msgspec.Struct, frozen=True, kw_only=True):
    handoff_id: str
    session_id: str
    status: HandoffStatus
    requested_at: datetime
    resolved_at: datetime | None = None
    reason: str | None = None
    contact: ContactDetails | None = None


class HandoffRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Hand a session to a person (an open handoff is answered as it is). ``wait_s``: how long to
    wait for the session's first turn to be stored, as a handoff may follow an answer at once."""

    app_id: str
    session_id: str
    key_id: str
    reason: str | None = None
    contact: ContactDetails | None = None
    wait_s: float = 0.0


class HandoffResolve(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    session_id: str
    key_id: str


class OpenHandoff(msgspec.Struct, frozen=True, kw_only=True):
    """A session waiting for a person, in ``obdal_handoffs`` (what chat workers stay quiet for)."""

    handoff_id: str
    requested_at: datetime


class AgentMessageCreate(msgspec.Struct, frozen=True, kw_only=True):
    """A person's reply to a session."""

    app_id: str
    session_id: str
    key_id: str
    content: str
    name: str | None = None


class AgentMessage(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str
    session_id: str
    content: str
    timestamp: datetime
    name: str | None = None


class SessionEventsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A session's handoff and the people's replies stored after ``after`` (a reply's id; all of
    them without it), for an event stream that (re)connects."""

    app_id: str
    session_id: str
    after: str | None = None


class SessionEvents(msgspec.Struct, frozen=True, kw_only=True):
    handoff: HandoffRecord | None
    messages: list[AgentMessage]


class LiveReply(msgspec.Struct, frozen=True, kw_only=True, tag="message"):
    message: AgentMessage


class LiveHandoff(msgspec.Struct, frozen=True, kw_only=True, tag="handoff"):
    handoff: HandoffRecord


# What an open session's event stream is told, on ``subjects.live_subject`` (core NATS).
LiveEvent: TypeAlias = LiveReply | LiveHandoff


FeedbackRating: TypeAlias = Literal["up", "down"]
FeedbackReason: TypeAlias = Literal["inaccurate", "incomplete", "irrelevant", "outdated", "other"]


class MessageFeedback(msgspec.Struct, frozen=True, kw_only=True):
    """An answer's rating as its session shows it."""

    rating: FeedbackRating
    reason: FeedbackReason | None
    comment: str | None
    updated_at: datetime


class SessionMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a session; assistant messages carry their turn's usage, sources and rating,
    a person's reply (``agent``) the name it was signed with."""

    message_id: str
    role: Literal["user", "assistant", "agent"]
    content: str
    timestamp: datetime
    usage: Usage | None = None
    sources: list[Source] = msgspec.field(default_factory=list)
    outcome: TurnOutcome | None = None
    feedback: MessageFeedback | None = None
    name: str | None = None


class SessionDetail(SessionSummary, frozen=True, kw_only=True):
    """A session's summary, every one of its messages, oldest first, and its latest handoff."""

    messages: list[SessionMessage]
    handoff: HandoffRecord | None = None


class SessionExportQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A page of whole sessions for an export; the caller follows ``next_cursor``."""

    app_id: str
    cursor: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    user: str | None = None


class SessionExportPage(msgspec.Struct, frozen=True, kw_only=True):
    sessions: list[SessionDetail]
    next_cursor: str | None = None


class EraseRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Erase one session, or every session of one end user (exactly one of the two)."""

    app_id: str
    session_id: str | None = None
    user: str | None = None


class EraseResult(msgspec.Struct, frozen=True, kw_only=True):
    session_ids: list[str]
    messages_erased: int


class EraseAppRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Erase every session of an app, with everything kept of them (the app is being deleted)."""

    app_id: str


# --- feedback on answers (metering) ---------------------------------------------------


class FeedbackSet(msgspec.Struct, frozen=True, kw_only=True):
    """Rate one answer (replacing any earlier rating of it). ``session_id``: only if the answer
    is of that session. ``wait_s``: how long to wait for the turn to be stored, as a rating may
    come right after the answer, before metering has consumed its turn event."""

    app_id: str
    message_id: str
    rating: FeedbackRating
    reason: FeedbackReason | None = None
    comment: str | None = None
    session_id: str | None = None
    wait_s: float = 0.0


class FeedbackRecord(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str
    session_id: str
    rating: FeedbackRating
    reason: FeedbackReason | None
    comment: str | None
    created_at: datetime
    updated_at: datetime


class FeedbackQuery(SessionQuery, frozen=True, kw_only=True):
    """A page of an app's ratings first given within ``[start, end)``, newest first: a page of
    sessions' fields, plus the rating to keep."""

    rating: FeedbackRating | None = None


class FeedbackItem(msgspec.Struct, frozen=True, kw_only=True):
    """A rating with the question and the answer it rates."""

    message_id: str
    session_id: str
    user: str | None
    rating: FeedbackRating
    reason: FeedbackReason | None
    comment: str | None
    question: str
    answer: str
    created_at: datetime
    updated_at: datetime


class FeedbackList(msgspec.Struct, frozen=True, kw_only=True):
    feedback: list[FeedbackItem]
    next_cursor: str | None = None


# --- analytics (metering) --------------------------------------------------------------


class AnalyticsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """An app's support figures over whole UTC days, both ends inclusive."""

    app_id: str
    start_date: date
    end_date: date
    group_by: Literal["day"] = "day"
    top: int = 10


class AnalyticsFigures(msgspec.Struct, frozen=True, kw_only=True):
    """What happened in a period: conversations started, messages (turns), distinct end users,
    turns by outcome (``handed_off``: turns of sessions handed to a person), ratings."""

    conversations: int = 0
    messages: int = 0
    users: int = 0
    answered: int = 0
    declined: int = 0
    curated: int = 0
    smalltalk: int = 0
    handed_off: int = 0
    feedback_up: int = 0
    feedback_down: int = 0
    handoffs: int = 0


class AnalyticsDay(AnalyticsFigures, frozen=True, kw_only=True):
    date: date


class QuestionExample(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str
    session_id: str
    question: str
    asked_at: datetime
    outcome: TurnOutcome
    rating: FeedbackRating | None = None


class QuestionGroup(msgspec.Struct, frozen=True, kw_only=True):
    """Similar questions: how often asked in the period (``count``), how many of those went
    unanswered (declined, rated down, handed off), one question that stands for them, the latest
    examples and when one was last asked."""

    group_id: str
    count: int
    unanswered: int
    declined: int
    rated_down: int
    handed_off: int
    representative: str
    examples: list[QuestionExample]
    last_asked_at: datetime


class FileCitations(msgspec.Struct, frozen=True, kw_only=True):
    file_id: str
    filename: str
    citations: int


class CuratedAnswerUse(msgspec.Struct, frozen=True, kw_only=True):
    answer_id: str
    served: int
    feedback_up: int
    feedback_down: int


class AnalyticsReport(msgspec.Struct, frozen=True, kw_only=True):
    start_date: date
    end_date: date
    group_by: Literal["day"]
    totals: AnalyticsFigures
    series: list[AnalyticsDay]
    top_questions: list[QuestionGroup]
    top_files: list[FileCitations]
    curated_answers: list[CuratedAnswerUse]
    # When the figures were last brought up to date (they trail the turns by a few seconds).
    as_of: datetime | None = None


class UnansweredQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Groups of questions unanswered within the days, most unanswered first; ``cursor`` is the
    previous page's ``next_cursor``."""

    app_id: str
    start_date: date
    end_date: date
    limit: int = 20
    cursor: str | None = None
    examples: int = 3


class UnansweredPage(msgspec.Struct, frozen=True, kw_only=True):
    start_date: date
    end_date: date
    groups: list[QuestionGroup]
    next_cursor: str | None = None
    as_of: datetime | None = None


class RetentionQuery(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str


class RetentionPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How long an app's session content is kept; ``None`` keeps it until erased."""

    app_id: str
    session_ttl_days: int | None = None


# Webhooks (the webhooks service's; docs/webhooks.md).

# What an app's webhook endpoints may hear of; an endpoint's ``events`` filter names some of them.
HookEventType: TypeAlias = Literal[
    "conversation.started",
    "message.answered",
    "message.declined",
    "feedback.created",
    "handoff.requested",
    "handoff.resolved",
    "message.received",
    "file.ready",
    "file.failed",
    "key.revoked",
    "budget.reached",
    "endpoint.disabled",
]
DeliveryState: TypeAlias = Literal["pending", "delivered", "failed"]


class HookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened to an app, published once by the service that saw it
    (:func:`obdal_common.hooks.publish_hook`). ``event_id`` is every delivery's ``webhook-id``."""

    event_id: str
    type: HookEventType
    app_id: str
    occurred_at: datetime
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class WebhookSecret(msgspec.Struct, frozen=True, kw_only=True):
    """A signing secret (``whsec_`` and base64); one being rotated out has ``expires_at``."""

    secret: str
    created_at: datetime
    expires_at: datetime | None = None


class WebhookEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """An app's webhook endpoint. ``events`` empty: every event. ``failing_since``: the first failed
    attempt since the last success; an endpoint failing for long is disabled (``disabled_reason``)."""

    endpoint_id: str
    app_id: str
    url: str
    created_at: datetime
    updated_at: datetime
    secrets: list[WebhookSecret]
    events: list[HookEventType] = msgspec.field(default_factory=list)
    description: str = ""
    enabled: bool = True
    disabled_reason: str | None = None
    last_success_at: datetime | None = None
    failing_since: datetime | None = None


class WebhookCreate(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    url: str
    events: list[HookEventType] = msgspec.field(default_factory=list)
    description: str = ""
    enabled: bool = True


class WebhookUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """The fields given change; ``enabled: true`` also clears a disabled endpoint's reason."""

    app_id: str
    endpoint_id: str
    url: str | None = None
    events: list[HookEventType] | None = None
    description: str | None = None
    enabled: bool | None = None


class WebhookLookup(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    endpoint_id: str


class WebhookRotate(WebhookLookup, frozen=True, kw_only=True):
    """A new secret; the current ones keep signing for ``overlap_s`` (receivers switch meanwhile)."""

    overlap_s: float = 86400.0


class WebhookListQuery(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str


class WebhookInfo(msgspec.Struct, frozen=True, kw_only=True):
    """An endpoint as callers see it: never its secrets, except ``secret`` once, on creation and rotation."""

    endpoint: WebhookEndpoint
    secret: str | None = None


class WebhookList(msgspec.Struct, frozen=True, kw_only=True):
    endpoints: list[WebhookEndpoint]


class WebhookDeleted(msgspec.Struct, frozen=True, kw_only=True):
    endpoint_id: str
    deliveries_deleted: int


class DeliveryAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """One try: the receiver's status code (``None`` when there was no answer) or what went wrong."""

    at: datetime
    latency_ms: float
    status_code: int | None = None
    error: str | None = None


class WebhookDelivery(msgspec.Struct, frozen=True, kw_only=True):
    delivery_id: str
    endpoint_id: str
    event_id: str
    type: HookEventType
    state: DeliveryState
    created_at: datetime
    attempts: list[DeliveryAttempt]
    next_attempt_at: datetime | None = None


class DeliveryQuery(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    endpoint_id: str
    limit: int = 50
    cursor: str | None = None
    state: DeliveryState | None = None


class DeliveryPage(msgspec.Struct, frozen=True, kw_only=True):
    deliveries: list[WebhookDelivery]
    next_cursor: str | None = None


class DeliveryLookup(WebhookLookup, frozen=True, kw_only=True):
    delivery_id: str


class WebhooksDeleteApp(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str


class WebhooksAppDeleted(msgspec.Struct, frozen=True, kw_only=True):
    endpoints_deleted: int


class DeliveriesErase(msgspec.Struct, frozen=True, kw_only=True):
    """Erase the deliveries that carry these sessions' content (the session's erasure)."""

    app_id: str
    session_ids: list[str]


class DeliveriesErased(msgspec.Struct, frozen=True, kw_only=True):
    deliveries_erased: int
