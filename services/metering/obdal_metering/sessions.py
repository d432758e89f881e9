"""Sessions in MongoDB: summaries kept in step with the stored turns, pages of them, whole sessions.

Turns (one per answer) are the source of truth. A ``sessions`` document per
(app, session) summarises them for listing; it is recomputed from the turns
after every write, never incremented, so redelivered or duplicated turn events
cannot skew it and a crash between the two writes is repaired by the redelivery.

Each answer shows its rating, if it has one (:mod:`obdal_metering.feedback`); a session's people's
replies (``agent_messages``) and latest handoff (``handoffs``, written by
:mod:`obdal_metering.handoffs`) are read here with it.

Content (questions, answers, sources, previews) is stored sealed with its session's key
(:mod:`obdal_metering.sealing`) and opened here on the way out; a turn whose key is gone
(erased while it was being read) is left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, DeleteOne, IndexModel, ReplaceOne
from pymongo.errors import BulkWriteError

from obdal_common.cursors import decode_cursor, encode_cursor
from obdal_common.errors import NotFound
from obdal_common.schemas import (
    AgentMessage,
    ContactDetails,
    HandoffRecord,
    MessageFeedback,
    SessionDetail,
    SessionExportPage,
    SessionExportQuery,
    SessionMessage,
    SessionPage,
    SessionQuery,
    SessionSummary,
    Source,
    Usage,
    encode,
)
from obdal_metering.feedback import message_feedback
from obdal_metering.sealing import SessionKeys, seal, unseal

__all__ = ["SessionKey", "SessionStore", "agent_message", "handoff_record"]

SessionKey = tuple[str, str]  # (app_id, session_id)

_PREVIEW_CHARS = 200
_DUPLICATE_KEY = 11000
# An export page stays well under NATS's default 1 MB message limit.
_EXPORT_PAGE_BYTES = 512 * 1024
_EXPORT_PAGE_SESSIONS = 50
_ORDER = [("started_at", DESCENDING), ("session_id", DESCENDING)]


def _summary(doc: dict[str, Any], key: bytes | None) -> SessionSummary:
    return SessionSummary(
        session_id=doc["session_id"],
        started_at=doc["started_at"],
        last_at=doc["last_at"],
        message_count=int(doc["message_count"]),
        total_tokens=int(doc["total_tokens"]),
        preview=unseal(key, doc["preview"]) or "",
        user=doc.get("user"),
        handoff_status=doc.get("handoff_status"),
    )


def _opened(key: bytes | None, stored: str | None) -> str | None:
    return None if stored is None else unseal(key, stored)


def handoff_record(doc: dict[str, Any], key: bytes | None) -> HandoffRecord:
    """A stored handoff as the API shows it; its reason and contact are sealed with the session's key."""
    contact = _opened(key, doc.get("contact"))
    return HandoffRecord(
        handoff_id=doc["_id"],
        session_id=doc["session_id"],
        status=doc["status"],
        requested_at=doc["requested_at"],
        resolved_at=doc.get("resolved_at"),
        reason=_opened(key, doc.get("reason")),
        contact=None if contact is None else msgspec.json.decode(contact, type=ContactDetails),
    )


def agent_message(doc: dict[str, Any], key: bytes | None) -> AgentMessage | None:
    """A stored reply of a person; ``None`` if its session's key is gone."""
    content = unseal(key, doc["content"])
    if content is None:
        return None
    return AgentMessage(
        message_id=doc["_id"],
        session_id=doc["session_id"],
        content=content,
        timestamp=doc["occurred_at"],
        name=_opened(key, doc.get("name")),
    )


def _sources(key: bytes | None, stored: str | list[dict[str, Any]]) -> list[Source] | None:
    if not isinstance(stored, str):  # stored before sealing
        return msgspec.convert(stored, list[Source])
    opened = unseal(key, stored)
    return None if opened is None else msgspec.json.decode(opened, type=list[Source])


def _messages(
    turns: Iterable[dict[str, Any]], key: bytes | None, feedback: Mapping[str, MessageFeedback]
) -> list[SessionMessage]:
    messages: list[SessionMessage] = []
    for turn in turns:
        at = turn["occurred_at"]
        question, answer = unseal(key, turn["user_message"]), unseal(key, turn["answer"])
        sources = _sources(key, turn["sources"])
        if question is None or answer is None or sources is None:
            continue
        messages.append(
            SessionMessage(message_id=turn["message_id"], role="user", content=question, timestamp=at)
        )
        messages.append(
            SessionMessage(
                message_id=turn["message_id"],
                role="assistant",
                content=answer,
                timestamp=at,
                usage=msgspec.convert(turn["usage"], Usage),
                sources=sources,
                # Turns stored before outcomes were recorded were answered or declined: unknown.
                outcome=turn.get("outcome"),
                feedback=feedback.get(turn["message_id"]),
            )
        )
    return messages


def _detail(
    summary: SessionSummary,
    turns: Sequence[dict[str, Any]],
    key: bytes | None,
    feedback: Mapping[str, MessageFeedback],
    *,
    replies: Sequence[dict[str, Any]],
    handoff: dict[str, Any] | None,
) -> SessionDetail:
    messages = _messages(turns, key, feedback)
    for doc in replies:
        reply = agent_message(doc, key)
        if reply is not None:
            messages.append(
                SessionMessage(
                    message_id=reply.message_id,
                    role="agent",
                    content=reply.content,
                    timestamp=reply.timestamp,
                    name=reply.name,
                )
            )
    # Stable: a turn's question stays before its answer, which share one time.
    messages.sort(key=lambda m: m.timestamp)
    return SessionDetail(
        **msgspec.structs.asdict(summary),
        messages=messages,
        handoff=None if handoff is None else handoff_record(handoff, key),
    )


class SessionStore:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str, *, keys: SessionKeys) -> None:
        self._db = client[database]
        self._keys = keys

    async def ensure_indexes(self) -> None:
        """The summary's identity, the listing order (all, and per end user), and turn lookups."""
        await self._db.sessions.create_indexes(
            [
                IndexModel([("app_id", ASCENDING), ("session_id", ASCENDING)], unique=True),
                # The refresh's guarded replace filters on the turn count too, and SecantusDB
                # scans the collection for a filter no index covers: 50 replaces took 19 s among
                # 20,000 summaries without it (metering slowed to 23 turns/s as sessions grew),
                # 61 ms with it.
                IndexModel([("app_id", ASCENDING), ("session_id", ASCENDING), ("message_count", ASCENDING)]),
                IndexModel([("app_id", ASCENDING), *_ORDER]),
                IndexModel([("app_id", ASCENDING), ("user", ASCENDING), *_ORDER]),
            ]
        )
        await self._db.turns.create_indexes(
            [
                IndexModel([("app_id", ASCENDING), ("user", ASCENDING)]),
                IndexModel([("app_id", ASCENDING), ("occurred_at", ASCENDING)]),
            ]
        )
        for collection in (self._db.agent_messages, self._db.handoffs):
            await collection.create_indexes([IndexModel([("app_id", ASCENDING), ("session_id", ASCENDING)])])

    async def refresh(self, keys: Iterable[SessionKey], *, shrinking: bool = False) -> None:
        """Recompute the summaries of these sessions from their stored turns (drop empty ones).

        Metering replicas may refresh one session at once; turns only ever get added
        (except by erasure and retention), so the summary that counted more turns saw
        more and wins. ``shrinking`` (retention just deleted turns) lifts that rule.
        """
        by_app: dict[str, set[str]] = defaultdict(set)
        for app_id, session_id in keys:
            by_app[app_id].add(session_id)
        for app_id, session_ids in by_app.items():
            scope = {"app_id": app_id, "session_id": {"$in": sorted(session_ids)}}
            cursor = await self._db.turns.aggregate(
                [
                    {"$match": scope},
                    {"$sort": {"occurred_at": 1, "message_id": 1}},
                    {
                        "$group": {
                            "_id": "$session_id",
                            "started_at": {"$min": "$occurred_at"},
                            "last_at": {"$max": "$occurred_at"},
                            "turns": {"$sum": 1},
                            "total_tokens": {"$sum": "$usage.total_tokens"},
                            "preview": {"$first": "$user_message"},
                            # A session's end user is its first turn's, whatever later turns say.
                            "user": {"$first": "$user"},
                        }
                    },
                ]
            )
            rows = {row["_id"]: row async for row in cursor}
            replies = await self._db.agent_messages.aggregate(
                [{"$match": scope}, {"$group": {"_id": "$session_id", "count": {"$sum": 1}}}]
            )
            reply_counts = {row["_id"]: int(row["count"]) async for row in replies}
            handoffs = await self._latest_handoffs(app_id, sorted(session_ids))
            sealing_keys = await self._keys.many(app_id, rows)
            ops: list[ReplaceOne[dict[str, Any]] | DeleteOne] = []
            for session_id in sorted(session_ids):
                key = {"app_id": app_id, "session_id": session_id}
                row = rows.get(session_id)
                if row is None:
                    ops.append(DeleteOne(key))
                    continue
                session_key = sealing_keys.get(session_id)
                preview = (unseal(session_key, str(row["preview"])) or "")[:_PREVIEW_CHARS]
                doc = {
                    **key,
                    "started_at": row["started_at"],
                    "last_at": row["last_at"],
                    "message_count": 2 * int(row["turns"]) + reply_counts.get(session_id, 0),
                    "total_tokens": int(row["total_tokens"]),
                    "preview": preview if session_key is None else seal(session_key, preview),
                    "user": row["user"],
                    "handoff_status": handoffs[session_id]["status"] if session_id in handoffs else None,
                }
                guard = {} if shrinking else {"message_count": {"$lte": doc["message_count"]}}
                ops.append(ReplaceOne({**key, **guard}, doc, upsert=True))
            await self._write_summaries(ops)
            # An erasure that ran between the aggregation and the write would be undone
            # by it: drop any summary written for a session that has no turns any more.
            left = await self._db.turns.aggregate([{"$match": scope}, {"$group": {"_id": "$session_id"}}])
            gone = session_ids - {row["_id"] async for row in left}
            if gone:
                await self._db.sessions.delete_many({"app_id": app_id, "session_id": {"$in": sorted(gone)}})

    async def _latest_handoffs(self, app_id: str, session_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each session's latest handoff document, by session id."""
        found = self._db.handoffs.find({"app_id": app_id, "session_id": {"$in": list(session_ids)}})
        latest: dict[str, dict[str, Any]] = {}
        for doc in await found.sort([("requested_at", ASCENDING)]).to_list():
            latest[doc["session_id"]] = doc
        return latest

    async def _replies(self, app_id: str, session_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        found = self._db.agent_messages.find({"app_id": app_id, "session_id": {"$in": list(session_ids)}})
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for doc in await found.sort([("occurred_at", ASCENDING), ("_id", ASCENDING)]).to_list():
            grouped[doc["session_id"]].append(doc)
        return grouped

    async def _write_summaries(self, ops: Sequence[ReplaceOne[dict[str, Any]] | DeleteOne]) -> None:
        try:
            await self._db.sessions.bulk_write(list(ops), ordered=False)
        except BulkWriteError as exc:
            # A guarded upsert that found a summary with more turns tries to insert a second
            # one and hits the unique index: the stored summary is newer, keep it.
            if any(e.get("code") != _DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    def _filter(
        self,
        app_id: str,
        *,
        cursor: str | None,
        start: datetime | None,
        end: datetime | None,
        user: str | None,
    ) -> dict[str, Any]:
        clauses: list[dict[str, Any]] = [{"app_id": app_id}]
        if user is not None:
            clauses.append({"user": user})
        if start is not None:
            clauses.append({"last_at": {"$gte": start}})
        if end is not None:
            clauses.append({"started_at": {"$lt": end}})
        if cursor is not None:
            after_at, after_id = decode_cursor(cursor)
            clauses.append(
                {
                    "$or": [
                        {"started_at": {"$lt": after_at}},
                        {"started_at": after_at, "session_id": {"$lt": after_id}},
                    ]
                }
            )
        return {"$and": clauses}

    async def _page(
        self, app_id: str, query: dict[str, Any], limit: int, *, by_user: bool
    ) -> tuple[list[SessionSummary], bool, dict[str, bytes]]:
        """Up to ``limit`` summaries in listing order, whether more follow, and their keys."""
        # The index in listing order, named: SecantusDB's planner chose the (app, session) index
        # and sorted every summary of the app in memory (585 ms for a page among 10,000; 336 ms
        # with the hint).
        order = [("app_id", ASCENDING), *([("user", ASCENDING)] if by_user else []), *_ORDER]
        found = self._db.sessions.find(query).sort(_ORDER).limit(limit + 1).hint(order)
        docs = await found.to_list()
        keys = await self._keys.many(app_id, (d["session_id"] for d in docs[:limit]))
        return [_summary(d, keys.get(d["session_id"])) for d in docs[:limit]], len(docs) > limit, keys

    async def summaries(self, query: SessionQuery) -> SessionPage:
        """A page of sessions, most recently started first; ``next_cursor`` when more follow."""
        mongo_query = self._filter(
            query.app_id, cursor=query.cursor, start=query.start, end=query.end, user=query.user
        )
        page, more, _ = await self._page(
            query.app_id, mongo_query, query.limit, by_user=query.user is not None
        )
        return SessionPage(
            data=page, next_cursor=encode_cursor(page[-1].started_at, page[-1].session_id) if more else None
        )

    async def _turns(self, app_id: str, session_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        found = self._db.turns.find({"app_id": app_id, "session_id": {"$in": list(session_ids)}})
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for turn in await found.sort([("occurred_at", ASCENDING), ("message_id", ASCENDING)]).to_list():
            grouped[turn["session_id"]].append(turn)
        return grouped

    async def get(self, app_id: str, session_id: str) -> SessionDetail:
        """Every message of one session of ``app_id``, oldest first."""
        doc = await self._db.sessions.find_one({"app_id": app_id, "session_id": session_id})
        turns = (await self._turns(app_id, [session_id])).get(session_id, []) if doc else []
        if doc is None or not turns:
            raise NotFound(f"no session {session_id}", code="session_not_found")
        key = await self._keys.get(app_id, session_id)
        feedback = await message_feedback(self._db, app_id, {session_id: key})
        replies = (await self._replies(app_id, [session_id])).get(session_id, [])
        handoff = (await self._latest_handoffs(app_id, [session_id])).get(session_id)
        return _detail(_summary(doc, key), turns, key, feedback, replies=replies, handoff=handoff)

    async def export_page(self, query: SessionExportQuery) -> SessionExportPage:
        """Whole sessions in listing order, as many as fit one NATS message."""
        mongo_query = self._filter(
            query.app_id, cursor=query.cursor, start=query.start, end=query.end, user=query.user
        )
        page, more, keys = await self._page(
            query.app_id, mongo_query, _EXPORT_PAGE_SESSIONS, by_user=query.user is not None
        )
        ids = [s.session_id for s in page]
        turns = await self._turns(query.app_id, ids)
        replies = await self._replies(query.app_id, ids)
        handoffs = await self._latest_handoffs(query.app_id, ids)
        feedback = await message_feedback(
            self._db, query.app_id, {s.session_id: keys.get(s.session_id) for s in page}
        )
        sessions: list[SessionDetail] = []
        size = 0
        for summary in page:
            detail = _detail(
                summary,
                turns.get(summary.session_id, []),
                keys.get(summary.session_id),
                feedback,
                replies=replies.get(summary.session_id, []),
                handoff=handoffs.get(summary.session_id),
            )
            size += len(encode(detail))
            if sessions and size > _EXPORT_PAGE_BYTES:
                more = True
                break
            sessions.append(detail)
        last = sessions[-1] if more and sessions else None
        next_cursor = encode_cursor(last.started_at, last.session_id) if last is not None else None
        return SessionExportPage(sessions=sessions, next_cursor=next_cursor)
