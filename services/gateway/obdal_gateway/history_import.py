"""An exported app's sessions and usage records, brought into a new app (``obdal apps import``,
docs/export.md): each exported turn and usage record becomes the event chat would have
published, with the new app's id, so metering stores them the way it stores any (sealed with
the session's key, grouped, counted in analytics), exactly once.

Event ids derive from the new app and the exported ids (``import.<app>.<id>``): importing the
same archive into the same app again stores nothing twice (JetStream's dedupe window, then
metering's unique event ids). People's replies and handoffs are not turns: they stay in the
archive (docs/export.md).
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from nats.js import JetStreamContext

from obdal_common import subjects
from obdal_common.messaging import publish_event
from obdal_common.schemas import SessionDetail, SessionMessage, TurnEvent, Usage, UsageEvent

__all__ = ["HistoryImport", "ImportedUsage", "publish", "turn_events", "usage_events"]

_NO_USAGE = Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0, cost=0.0)


class ImportedUsage(msgspec.Struct, frozen=True, kw_only=True):
    """A usage record as the export writes it (no app id; no session id once erased)."""

    event_id: str
    key_id: str
    session_id: str | None
    message_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float
    occurred_at: datetime


class HistoryImport(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One batch: sessions (as exported) and usage records; ``keys`` maps an exported key id to
    the new app's, ``key_id`` stands for keys not recreated (and for turns, which name none)."""

    key_id: str
    keys: dict[str, str] = msgspec.field(default_factory=dict)
    sessions: list[SessionDetail] = msgspec.field(default_factory=list)
    usage: list[ImportedUsage] = msgspec.field(default_factory=list)


def _turn(
    app_id: str, key_id: str, session: SessionDetail, question: SessionMessage, answer: SessionMessage | None
) -> TurnEvent:
    anchor = answer or question
    return TurnEvent(
        event_id=f"turn.import.{app_id}.{anchor.message_id}",
        app_id=app_id,
        key_id=key_id,
        session_id=session.session_id,
        message_id=anchor.message_id,
        user_message=question.content,
        answer=answer.content if answer else "",
        sources=answer.sources if answer else [],
        usage=(answer.usage if answer else None) or _NO_USAGE,
        occurred_at=anchor.timestamp,
        user=session.user,
        outcome=(answer.outcome if answer else None) or ("answered" if answer else "handed_off"),
    )


def turn_events(app_id: str, batch: HistoryImport) -> list[TurnEvent]:
    """Each question with the assistant's answer that follows it (a question asked while the
    session was with a person has none)."""
    events = []
    for session in batch.sessions:
        messages = [m for m in session.messages if m.role != "agent"]
        for n, message in enumerate(messages):
            if message.role != "user":
                continue
            following = messages[n + 1] if n + 1 < len(messages) else None
            answer = following if following is not None and following.role == "assistant" else None
            events.append(_turn(app_id, batch.key_id, session, message, answer))
    return events


def usage_events(app_id: str, batch: HistoryImport) -> list[UsageEvent]:
    return [
        UsageEvent(
            event_id=f"usage.import.{app_id}.{row.event_id}",
            app_id=app_id,
            key_id=batch.keys.get(row.key_id, batch.key_id),
            session_id=row.session_id or "",
            message_id=row.message_id,
            model=row.model,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            total_tokens=row.total_tokens,
            cost=row.cost,
            occurred_at=row.occurred_at,
        )
        for row in batch.usage
    ]


async def publish(
    js: JetStreamContext, app_id: str, batch: HistoryImport, *, give_up_after: float
) -> dict[str, int]:
    """Publish the batch's events for metering; how many of each."""
    turns = turn_events(app_id, batch)
    usage = usage_events(app_id, batch)
    for subject, events in ((subjects.TURN_EVENT, turns), (subjects.USAGE_EVENT, usage)):
        for event in events:
            await publish_event(js, subject, event, msg_id=event.event_id, give_up_after=give_up_after)
    return {"turns": len(turns), "usage": len(usage)}
