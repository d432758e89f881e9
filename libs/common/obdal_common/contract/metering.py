"""Metering's contract: every RPC it answers, who calls it, what it can fail with.

Served by ``obdal_metering.bindings`` (one handler per RPC, checked at start); called
by the gateway through ``Metering(bus)``. Metering owns usage, turns, sessions, handoffs and
people's replies, feedback, audit and retention (MongoDB); it also consumes the events declared in
:mod:`obdal_common.contract.events`. Every RPC may answer 503 ``metering_unavailable``
or ``metering_timeout`` (no replica answering), 503 ``mongo_unavailable`` (MongoDB
down) and 400 ``bad_message``, besides what it declares.
"""

from __future__ import annotations

from obdal_common import subjects
from obdal_common.contract.rpc import Contract, Rpc
from obdal_common.errors import BadRequest, Conflict, NotFound
from obdal_common.schemas import (
    AgentMessage,
    AgentMessageCreate,
    AnalyticsQuery,
    AnalyticsReport,
    AuditPage,
    AuditQuery,
    EraseAppRequest,
    EraseRequest,
    EraseResult,
    FeedbackList,
    FeedbackQuery,
    FeedbackRecord,
    FeedbackSet,
    HandoffRecord,
    HandoffRequest,
    HandoffResolve,
    RetentionPolicy,
    RetentionQuery,
    ServiceStatus,
    SessionDetail,
    SessionEvents,
    SessionEventsQuery,
    SessionExportPage,
    SessionExportQuery,
    SessionLookup,
    SessionPage,
    SessionQuery,
    StatusQuery,
    UnansweredPage,
    UnansweredQuery,
    UsageQuery,
    UsageRecordPage,
    UsageRecordsQuery,
    UsageReport,
)

__all__ = ["Metering"]

_QUERY_S = 5.0
# An app's erasure destroys each of its sessions' keys (a stream message each) and recomputes
# every day it was used.
_ERASE_APP_S = 60.0


class Metering(Contract):
    service = "metering"

    status = Rpc(subjects.status_subject("metering"), StatusQuery, ServiceStatus, timeout=1.5)
    """Health of metering and MongoDB (``GET /v1/status``)."""

    usage = Rpc("obdal.metering.usage", UsageQuery, UsageReport, timeout=_QUERY_S, errors=(BadRequest,))
    """Totals and a paged breakdown over a date range (``GET /v1/usage``); 400 ``invalid_cursor``."""

    usage_records = Rpc(
        "obdal.metering.usage.records",
        UsageRecordsQuery,
        UsageRecordPage,
        timeout=_QUERY_S,
        errors=(BadRequest,),
    )
    """A page of the usage events themselves, oldest first (``GET /v1/export``); 400
    ``invalid_cursor``."""

    audit = Rpc("obdal.metering.audit", AuditQuery, AuditPage, timeout=_QUERY_S)
    """The audit log, newest first (``GET /v1/admin/audit``)."""

    sessions = Rpc(
        "obdal.metering.sessions.list", SessionQuery, SessionPage, timeout=_QUERY_S, errors=(BadRequest,)
    )
    """A page of session summaries (``GET /v1/sessions``); 400 ``invalid_cursor``."""

    session = Rpc(
        "obdal.metering.sessions.get", SessionLookup, SessionDetail, timeout=_QUERY_S, errors=(NotFound,)
    )
    """One session with every message (``GET /v1/sessions/{id}``); 404 ``session_not_found``."""

    export = Rpc(
        "obdal.metering.sessions.export",
        SessionExportQuery,
        SessionExportPage,
        timeout=_QUERY_S,
        errors=(BadRequest,),
    )
    """A page of whole sessions (``GET /v1/sessions/export``); 400 ``invalid_cursor``."""

    erase = Rpc(
        "obdal.metering.sessions.erase", EraseRequest, EraseResult, timeout=_QUERY_S, errors=(BadRequest,)
    )
    """Erase one session or every session of one end user, with a tombstone that keeps
    late events of it out; 400 ``invalid_erasure``. The chat's working history is the
    chat's to erase (:class:`obdal_common.contract.chat.Chat`)."""

    erase_app = Rpc("obdal.metering.apps.erase", EraseAppRequest, EraseResult, timeout=_ERASE_APP_S)
    """Erase every session of an app, its ratings, analytics and retention policy, behind one
    tombstone for the whole app (``DELETE /v1/admin/apps/{id}``); usage totals and the audit log
    stay, as with every erasure (they hold no content). Safe to repeat."""

    feedback = Rpc(
        "obdal.metering.feedback.set", FeedbackSet, FeedbackRecord, timeout=_QUERY_S, errors=(NotFound,)
    )
    """Rate an answer, replacing its earlier rating (``POST /v1/messages/{id}/feedback``); 404
    ``message_not_found``. The caller adds the request's ``wait_s`` to the timeout."""

    feedback_list = Rpc(
        "obdal.metering.feedback.list", FeedbackQuery, FeedbackList, timeout=_QUERY_S, errors=(BadRequest,)
    )
    """A page of ratings with what they rate (``GET /v1/feedback``); 400 ``invalid_cursor``."""

    analytics = Rpc(
        "obdal.metering.analytics", AnalyticsQuery, AnalyticsReport, timeout=_QUERY_S, errors=(BadRequest,)
    )
    """An app's support figures by day, top questions and files (``GET /v1/analytics``)."""

    unanswered = Rpc(
        "obdal.metering.analytics.unanswered",
        UnansweredQuery,
        UnansweredPage,
        timeout=_QUERY_S,
        errors=(BadRequest,),
    )
    """Groups of similar questions that went unanswered (``GET /v1/analytics/unanswered``);
    400 ``invalid_cursor``."""

    retention = Rpc("obdal.metering.retention.get", RetentionQuery, RetentionPolicy, timeout=_QUERY_S)
    """An app's retention policy (``GET /v1/admin/apps/{id}/retention``)."""

    set_retention = Rpc(
        "obdal.metering.retention.set",
        RetentionPolicy,
        RetentionPolicy,
        timeout=_QUERY_S,
        errors=(BadRequest,),
    )
    """Set it (``PUT …/retention``); 400 ``invalid_retention``."""

    handoff = Rpc(
        "obdal.metering.handoffs.request",
        HandoffRequest,
        HandoffRecord,
        timeout=_QUERY_S,
        errors=(NotFound,),
    )
    """Hand a session to a person, or answer its open handoff (``POST /v1/sessions/{id}/handoff``);
    404 ``session_not_found``. The caller adds the request's ``wait_s`` to the timeout."""

    resolve_handoff = Rpc(
        "obdal.metering.handoffs.resolve",
        HandoffResolve,
        HandoffRecord,
        timeout=_QUERY_S,
        errors=(NotFound, Conflict),
    )
    """Close a session's open handoff (``POST …/handoff/resolve``); 404 ``session_not_found``, 409
    ``handoff_not_open``."""

    agent_message = Rpc(
        "obdal.metering.sessions.reply",
        AgentMessageCreate,
        AgentMessage,
        timeout=_QUERY_S,
        errors=(NotFound,),
    )
    """Store a person's reply and tell the session's open event streams (``POST …/messages``);
    404 ``session_not_found``."""

    session_events = Rpc(
        "obdal.metering.sessions.events",
        SessionEventsQuery,
        SessionEvents,
        timeout=_QUERY_S,
        errors=(NotFound,),
    )
    """A session's handoff and the replies after a given one (``GET …/events`` connecting); 404
    ``session_not_found``."""
