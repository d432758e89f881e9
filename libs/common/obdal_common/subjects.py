"""Every NATS stream, event subject, consumer and bucket name, in one place.

Request/reply subjects are not here: each is written once, in its RPC's declaration in
:mod:`obdal_common.contract` (``obdal.<service>.<rpc>``, health on ``obdal.status.<service>``).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AUDIT_EVENT",
    "CHAT_PARTIAL",
    "CHAT_PARTIAL_CONSUMER",
    "CHAT_PARTIAL_STREAM",
    "CHAT_QUEUE",
    "CHAT_REQUEST",
    "CONSOLE_SESSION_TTL_S",
    "DEADLETTER_STREAM",
    "DEADLETTER_SUBJECTS",
    "EVENTS_STREAM",
    "EVENTS_SUBJECTS",
    "HOOKS_CONSUMER",
    "HOOKS_STREAM",
    "HOOKS_SUBJECTS",
    "INGEST_CONSUMER",
    "INGEST_JOB",
    "INGEST_STREAM",
    "KV_APPS",
    "KV_CONSOLE_SESSIONS",
    "KV_FILES",
    "KV_HANDOFFS",
    "KV_INDEX_GENERATIONS",
    "KV_KEYS",
    "KV_OPERATORS",
    "KV_SOURCES",
    "KV_SOURCE_PAGES",
    "KV_WEBHOOKS",
    "METERING_CONSUMER",
    "OBJECT_STORE_FILES",
    "SESSION_KEYS_STREAM",
    "SESSION_KEYS_SUBJECTS",
    "TURN_EVENT",
    "USAGE_EVENT",
    "chat_cancel_subject",
    "deadletter_subject",
    "handoff_entry",
    "hook_subject",
    "live_subject",
    "session_key_subject",
    "status_subject",
    "turn_event_id",
    "usage_event_id",
]

# Chat: the gateway sends a request; one worker of the queue group answers with
# a stream of replies on the request's reply subject.
CHAT_REQUEST: Final = "obdal.chat.request"
CHAT_QUEUE: Final = "chat"

# Ingest: jobs on a work-queue stream (each job delivered to one worker); its RPCs (the file
# lifecycle, obdal.ingest.files.*) are declared in obdal_common.contract.ingest.
INGEST_STREAM: Final = "OBDAL_INGEST"
INGEST_JOB: Final = "obdal.ingest.job"
INGEST_CONSUMER: Final = "ingest"

# Events into metering: one stream, three subjects, deduplicated by Nats-Msg-Id.
EVENTS_STREAM: Final = "OBDAL_EVENTS"
USAGE_EVENT: Final = "obdal.events.usage"
TURN_EVENT: Final = "obdal.events.turn"
AUDIT_EVENT: Final = "obdal.events.audit"
EVENTS_SUBJECTS: Final = ("obdal.events.>",)
METERING_CONSUMER: Final = "metering"
# Events that can never be stored, with the reason in a header.
DEADLETTER_STREAM: Final = "OBDAL_DEADLETTER"
DEADLETTER_SUBJECTS: Final = ("obdal.deadletter.>",)

# Events an app's webhooks may hear of (obdal_common.hooks), published by whichever service saw
# them, deduplicated by Nats-Msg-Id; the webhooks service fans each out to the app's endpoints.
HOOKS_STREAM: Final = "OBDAL_HOOKS"
HOOKS_SUBJECTS: Final = ("obdal.hooks.>",)
HOOKS_CONSUMER: Final = "webhooks"

# Key-value buckets and the object store.
KV_APPS: Final = "obdal_apps"
KV_KEYS: Final = "obdal_keys"
KV_FILES: Final = "obdal_files"
# Curated answers, ingest's: key ``<app_id>.<answer_id>``; chat workers watch a mirror of it.
KV_ANSWERS: Final = "obdal_answers"
OBJECT_STORE_FILES: Final = "obdal_file_bytes"
# Website sources, ingest's: key ``<app_id>.<source_id>``; a sync's claim (its lease) is in the record,
# taken by compare-and-set, so one ingest replica syncs a source at a time.
KV_SOURCES: Final = "obdal_sources"
# Each source's pages, ingest's: key ``<app_id>.<source_id>.<sha256 of the URL, 40 hex>``, holding the
# page's file, validators (ETag, Last-Modified) and content hash for the next sync.
KV_SOURCE_PAGES: Final = "obdal_source_pages"
# Console operators (the gateway's): key ``operator.<operator_id>``, plus ``email.<sha256 of the e-mail>``
# holding the id, created atomically so two operators never share an e-mail.
KV_OPERATORS: Final = "obdal_operators"
# Signed-in console browsers (the gateway's): key ``<operator_id>.<sha256 of the cookie token>``;
# the bucket's TTL is a session's absolute lifetime.
KV_CONSOLE_SESSIONS: Final = "obdal_console_sessions"
# No console session outlives this, whatever the gateway's own (shorter) absolute expiry says.
CONSOLE_SESSION_TTL_S: Final = 24 * 3600.0
# Webhook endpoints (the webhooks service's): key ``<app_id>.<endpoint_id>``, with their secrets.
KV_WEBHOOKS: Final = "obdal_webhooks"
# Sessions waiting for a person (metering's): key ``<app_id>.<session_id>``, an open handoff each,
# deleted when it is resolved or erased; chat workers watch a mirror and stay quiet for them.
KV_HANDOFFS: Final = "obdal_handoffs"
# Each app's index generation (ingest's, read by chat workers): key ``<app_id>``, an empty value
# put after every write or delete of the app's passages; its revision is the generation a cached
# search is checked against (obdal_retrieval.generations).
KV_INDEX_GENERATIONS: Final = "obdal_index_generations"
# One key per session, sealing its content in MongoDB (metering's). A stream, not a KV bucket:
# erasing a message, which is how a key is destroyed, is refused in KV buckets (deny_delete).
SESSION_KEYS_STREAM: Final = "OBDAL_SESSION_KEYS"
SESSION_KEYS_SUBJECTS: Final = ("obdal.sessionkey.>",)

# Answers whose worker died mid-stream (published by the gateway, metered by a surviving chat worker).
CHAT_PARTIAL_STREAM: Final = "OBDAL_CHAT_PARTIAL"
CHAT_PARTIAL: Final = "obdal.chat.partial"
CHAT_PARTIAL_CONSUMER: Final = "chat-partial"


def status_subject(service: str) -> str:
    """The request/reply subject on which ``service`` reports its health."""
    return f"obdal.status.{service}"


def chat_cancel_subject(request_id: str) -> str:
    """Published by the gateway when the client of ``request_id`` went away."""
    return f"obdal.chat.cancel.{request_id}"


def deadletter_subject(service: str) -> str:
    """Where ``service`` puts messages it can never process."""
    return f"obdal.deadletter.{service}"


def hook_subject(event_type: str) -> str:
    """Where an event of ``event_type`` (``message.answered``) is published."""
    return f"obdal.hooks.{event_type}"


def handoff_entry(app_id: str, session_id: str) -> str:
    """A session's key in ``KV_HANDOFFS`` while it waits for a person."""
    return f"{app_id}.{session_id}"


def live_subject(app_id: str, session_id: str) -> str:
    """Core NATS, no stream: a person's reply or a handoff's change, published by metering once
    stored, for the gateways holding that session's event stream (docs/handoff.md)."""
    return f"obdal.live.{app_id}.{session_id}"


def session_key_subject(app_id: str, session_id: str) -> str:
    """Where the sealing key of a session is (ids are letters, digits, ``_`` and ``-``)."""
    return f"obdal.sessionkey.{app_id}.{session_id}"


def usage_event_id(message_id: str) -> str:
    """The usage event id (and ``Nats-Msg-Id``) of an answer: one per answer, whoever publishes it."""
    return f"usage.{message_id}"


def turn_event_id(message_id: str) -> str:
    """The turn event id (and ``Nats-Msg-Id``) of an answer: one per answer, whoever publishes it."""
    return f"turn.{message_id}"
