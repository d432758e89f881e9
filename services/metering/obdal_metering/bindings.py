"""Metering's side of its contract: one handler per RPC of :class:`~obdal_common.contract.Metering`.

MongoDB being unreachable is mapped here, once for every RPC, to 503 ``mongo_unavailable``:
the stores below raise pymongo's own errors and never map them themselves.
"""

from __future__ import annotations

from pymongo.errors import PyMongoError

from obdal_common.contract import Bindings, Metering
from obdal_common.errors import DependencyUnavailable
from obdal_common.health import Check, status_handler
from obdal_common.schemas import SessionDetail, SessionLookup
from obdal_metering.erasure import Eraser
from obdal_metering.feedback import FeedbackStore
from obdal_metering.handoffs import Handoffs
from obdal_metering.reports import Reports
from obdal_metering.sessions import SessionStore
from obdal_metering.store import MeteringStore

__all__ = ["metering_bindings"]


def _mongo_unavailable() -> DependencyUnavailable:
    return DependencyUnavailable(
        "the metering store (MongoDB) is unavailable, retry shortly", code="mongo_unavailable"
    )


def metering_bindings(
    *,
    store: MeteringStore,
    sessions: SessionStore,
    feedback: FeedbackStore,
    handoffs: Handoffs,
    eraser: Eraser,
    reports: Reports,
    checks: dict[str, Check],
) -> Bindings:
    """Every metering RPC bound to the store that answers it."""

    async def session(lookup: SessionLookup) -> SessionDetail:
        return await sessions.get(lookup.app_id, lookup.session_id)

    return (
        Bindings(Metering, lower_errors={PyMongoError: _mongo_unavailable})
        .bind(Metering.status, status_handler("metering", checks))
        .bind(Metering.usage, store.usage)
        .bind(Metering.usage_records, store.usage_records)
        .bind(Metering.audit, store.audit)
        .bind(Metering.sessions, sessions.summaries)
        .bind(Metering.session, session)
        .bind(Metering.export, sessions.export_page)
        .bind(Metering.erase, eraser.erase)
        .bind(Metering.erase_app, eraser.erase_app)
        .bind(Metering.feedback, feedback.set)
        .bind(Metering.feedback_list, feedback.list)
        .bind(Metering.retention, eraser.retention)
        .bind(Metering.set_retention, eraser.set_retention)
        .bind(Metering.analytics, reports.analytics)
        .bind(Metering.unanswered, reports.unanswered)
        .bind(Metering.handoff, handoffs.request)
        .bind(Metering.resolve_handoff, handoffs.resolve)
        .bind(Metering.agent_message, handoffs.reply)
        .bind(Metering.session_events, handoffs.events)
    )
