"""Sessions handed to a person: the handoff, people's replies, and who hears of them (docs/handoff.md).

Metering owns both, beside the sessions they belong to: ``handoffs`` (one document per handoff,
its reason and contact sealed with the session's key) and ``agent_messages`` (sealed likewise), so
one erasure removes them with the session and destroying its key makes every copy unreadable.
``handoff_counts`` keeps one content-free line per handoff and reply for usage
(:meth:`obdal_metering.store.MeteringStore.usage`), which outlives erasure like usage events do.

An open handoff is also an entry of the KV bucket ``obdal_handoffs``: creating it is the lock
(two requests racing for one session open one handoff), and chat workers watch the bucket to stay
quiet. Once a change is stored it is told to the session's open event streams over core NATS
(``subjects.live_subject``); a stream that was not connected reads what it missed from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel

from obdal_common import subjects
from obdal_common.errors import Conflict, NotFound
from obdal_common.hooks import publish_hook
from obdal_common.ids import new_id
from obdal_common.messaging import read_record
from obdal_common.schemas import (
    AgentMessage,
    AgentMessageCreate,
    HandoffRecord,
    HandoffRequest,
    HandoffResolve,
    LiveEvent,
    LiveHandoff,
    LiveReply,
    OpenHandoff,
    SessionEvents,
    SessionEventsQuery,
    encode,
)
from obdal_metering.rollups import Rollups, mongo_now
from obdal_metering.sealing import SessionKeys, seal
from obdal_metering.sessions import SessionStore, agent_message, handoff_record
from obdal_metering.waiting import found_within

__all__ = ["Handoffs"]

log = logging.getLogger(__name__)

# How often a request that lost the race for a session's handoff looks for the winner's document.
_RACE_POLL_S = 0.05
# How long a request that lost the race for a session's handoff waits for the winner's document.
_RACE_WAIT_S = 2.0
# Events for webhooks are retried this long through a NATS outage, then logged as lost.
_HOOK_PUBLISH_S = 5.0


def _no_session(session_id: str) -> NotFound:
    return NotFound(f"no session {session_id}", code="session_not_found")


class Handoffs:
    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        database: str,
        *,
        nc: NATS,
        kv: KeyValue,
        keys: SessionKeys,
        sessions: SessionStore,
        rollups: Rollups,
    ) -> None:
        self._db = client[database]
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._kv = kv
        self._keys = keys
        self._sessions = sessions
        self._rollups = rollups

    async def ensure_indexes(self) -> None:
        """Usage counts by app and time (the collections' own lookups are the session store's)."""
        await self._db.handoff_counts.create_indexes(
            [IndexModel([("app_id", ASCENDING), ("occurred_at", ASCENDING)])]
        )

    async def _key(self, app_id: str, session_id: str, *, wait_s: float = 0.0) -> bytes:
        """The sealing key of a session that has a stored turn (waiting up to ``wait_s`` for its
        first), or 404: an id of another app, or one never used, is not a session."""
        scope = {"app_id": app_id, "session_id": session_id}
        turn = await found_within(lambda: self._db.turns.find_one(scope, {"_id": 1}), wait_s=wait_s)
        key = None if turn is None else await self._keys.get(app_id, session_id)
        if key is None:  # never a session, or erased
            raise _no_session(session_id)
        return key

    async def _tell(self, app_id: str, session_id: str, event: LiveEvent) -> None:
        """Nudge the session's open event streams; they read from here what a lost nudge missed."""
        try:
            await self._nc.publish(subjects.live_subject(app_id, session_id), encode(event))
        except Exception as exc:  # stored already: a stream that reconnects reads it
            log.warning("could not tell the streams of %s: %s", session_id, exc)

    async def _count(self, kind: str, app_id: str, key_id: str, at: datetime) -> None:
        # Named as usage events' fields are, so usage filters both alike.
        await self._db.handoff_counts.insert_one(
            {"kind": kind, "app_id": app_id, "key_id": key_id, "occurred_at": at}
        )

    async def request(self, request: HandoffRequest) -> HandoffRecord:
        """Hand the session to a person; an open handoff is answered as it is."""
        app_id, session_id = request.app_id, request.session_id
        key = await self._key(app_id, session_id, wait_s=request.wait_s)
        handoff_id = new_id("hof")
        now = mongo_now()
        entry = subjects.handoff_entry(app_id, session_id)
        try:
            await self._kv.create(entry, encode(OpenHandoff(handoff_id=handoff_id, requested_at=now)))
        except KeyWrongLastSequenceError:
            return await self._open(app_id, session_id, key)
        contact = None if request.contact is None else encode(request.contact).decode()
        doc = {
            "_id": handoff_id,
            "app_id": app_id,
            "session_id": session_id,
            "status": "requested",
            "requested_at": now,
            "requested_by": request.key_id,
            "reason": None if request.reason is None else seal(key, request.reason),
            "contact": None if contact is None else seal(key, contact),
        }
        try:
            await self._db.handoffs.insert_one(doc)
        except BaseException:
            with contextlib.suppress(Exception):  # the lock must not outlive a handoff never stored
                await self._kv.delete(entry)
            raise
        # The question the assistant could not help with counts as handed off (analytics).
        last = await self._db.turns.find_one_and_update(
            {"app_id": app_id, "session_id": session_id},
            {"$set": {"handed_off": True}},
            sort=[("occurred_at", DESCENDING)],
            projection={"occurred_at": 1},
        )
        await self._count("handoff", app_id, request.key_id, now)
        await self._rollups.mark([(app_id, now), *([(app_id, last["occurred_at"])] if last else [])])
        await self._sessions.refresh([(app_id, session_id)])
        record = handoff_record(doc, key)
        detail = await self._sessions.get(app_id, session_id)
        await publish_hook(
            self._js,
            "handoff.requested",
            app_id=app_id,
            data={
                "handoff_id": handoff_id,
                "session_id": session_id,
                "user": detail.user,
                "reason": request.reason,
                "contact": None if request.contact is None else msgspec.to_builtins(request.contact),
                "requested_at": now.isoformat(),
                "transcript": [
                    {"role": m.role, "content": m.content, "timestamp": m.timestamp.isoformat()}
                    for m in detail.messages
                ],
            },
            event_id=f"handoff.requested.{handoff_id}",
            give_up_after=_HOOK_PUBLISH_S,
        )
        await self._tell(app_id, session_id, LiveHandoff(handoff=record))
        return record

    async def _open(self, app_id: str, session_id: str, key: bytes) -> HandoffRecord:
        """The session's open handoff (another request opened it, perhaps a moment ago)."""
        deadline = time.monotonic() + _RACE_WAIT_S
        while True:
            entry = await read_record(self._kv, subjects.handoff_entry(app_id, session_id), OpenHandoff)
            doc = None if entry is None else await self._db.handoffs.find_one({"_id": entry[0].handoff_id})
            if doc is not None:
                return handoff_record(doc, key)
            if time.monotonic() > deadline:
                raise Conflict("this session's handoff is changing, retry", code="handoff_busy")
            await asyncio.sleep(_RACE_POLL_S)

    async def resolve(self, request: HandoffResolve) -> HandoffRecord:
        """Close the session's open handoff: the assistant answers again."""
        app_id, session_id = request.app_id, request.session_id
        key = await self._key(app_id, session_id)
        entry = await read_record(self._kv, subjects.handoff_entry(app_id, session_id), OpenHandoff)
        if entry is None:
            raise Conflict("this session has no open handoff", code="handoff_not_open")
        now = mongo_now()
        doc = await self._db.handoffs.find_one_and_update(
            {"_id": entry[0].handoff_id, "status": "requested"},
            {"$set": {"status": "resolved", "resolved_at": now, "resolved_by": request.key_id}},
            return_document=True,
        )
        with contextlib.suppress(KeyNotFoundError):
            await self._kv.delete(subjects.handoff_entry(app_id, session_id))
        if doc is None:
            raise Conflict("this session has no open handoff", code="handoff_not_open")
        await self._sessions.refresh([(app_id, session_id)])
        record = handoff_record(doc, key)
        await publish_hook(
            self._js,
            "handoff.resolved",
            app_id=app_id,
            data={
                "handoff_id": record.handoff_id,
                "session_id": session_id,
                "requested_at": record.requested_at.isoformat(),
                "resolved_at": now.isoformat(),
            },
            event_id=f"handoff.resolved.{record.handoff_id}",
            give_up_after=_HOOK_PUBLISH_S,
        )
        await self._tell(app_id, session_id, LiveHandoff(handoff=record))
        return record

    async def reply(self, request: AgentMessageCreate) -> AgentMessage:
        """Store a person's reply and tell the session's open streams."""
        app_id, session_id = request.app_id, request.session_id
        key = await self._key(app_id, session_id)
        now = mongo_now()
        doc = {
            "_id": new_id("msg"),
            "app_id": app_id,
            "session_id": session_id,
            "occurred_at": now,
            "key_id": request.key_id,
            "content": seal(key, request.content),
            "name": None if request.name is None else seal(key, request.name),
        }
        await self._db.agent_messages.insert_one(doc)
        await self._count("agent_message", app_id, request.key_id, now)
        await self._sessions.refresh([(app_id, session_id)])
        message = agent_message(doc, key)
        assert message is not None  # sealed with the key just read
        await self._tell(app_id, session_id, LiveReply(message=message))
        return message

    async def events(self, query: SessionEventsQuery) -> SessionEvents:
        """The session's latest handoff and its replies after ``after`` (all without it)."""
        key = await self._key(query.app_id, query.session_id)
        scope: dict[str, Any] = {"app_id": query.app_id, "session_id": query.session_id}
        latest = await self._db.handoffs.find(scope).sort([("requested_at", DESCENDING)]).limit(1).to_list()
        after = (
            None
            if query.after is None
            else await self._db.agent_messages.find_one({**scope, "_id": query.after})
        )
        found = self._db.agent_messages.find(scope).sort([("occurred_at", ASCENDING), ("_id", ASCENDING)])
        messages = []
        for doc in await found.to_list():
            if after is not None and (doc["occurred_at"], doc["_id"]) <= (after["occurred_at"], after["_id"]):
                continue
            message = agent_message(doc, key)
            if message is not None:
                messages.append(message)
        return SessionEvents(handoff=handoff_record(latest[0], key) if latest else None, messages=messages)
