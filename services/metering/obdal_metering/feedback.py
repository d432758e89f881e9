"""Feedback on answers: one rating per (app, message), changeable, stored beside the turn it rates.

A ``feedback`` document holds the rating and reason in clear (the listing filters on them) and
the comment sealed with its session's key (:mod:`obdal_metering.sealing`), like the turn's own
content, so erasing the session makes it unreadable wherever MongoDB still keeps a copy.
Erasure and retention delete the documents with their turns (:mod:`obdal_metering.erasure`).
A rating marks its turn's day for the analytics to recompute (:mod:`obdal_metering.rollups`).

A rating may come right after its answer ends, before the turn event is consumed (~60 ms p50):
:meth:`FeedbackStore.set` waits for the turn up to the request's ``wait_s`` before a 404.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from obdal_common.cursors import decode_cursor, encode_cursor
from obdal_common.errors import NotFound
from obdal_common.schemas import (
    FeedbackItem,
    FeedbackList,
    FeedbackQuery,
    FeedbackRecord,
    FeedbackSet,
    MessageFeedback,
)
from obdal_metering.rollups import Rollups
from obdal_metering.sealing import SessionKeys, seal, unseal
from obdal_metering.waiting import found_within

__all__ = ["FeedbackStore", "message_feedback"]

_ORDER = [("created_at", DESCENDING), ("message_id", DESCENDING)]


def _not_found(message_id: str) -> NotFound:
    return NotFound(f"no answer {message_id}", code="message_not_found")


def _comment(key: bytes | None, stored: str | None) -> str | None:
    return None if stored is None else unseal(key, stored)


async def message_feedback(
    db: AsyncDatabase[dict[str, Any]], app_id: str, keys: Mapping[str, bytes | None]
) -> dict[str, MessageFeedback]:
    """The ratings of the answers of these sessions (session id -> its key), by message id."""
    found = db.feedback.find({"app_id": app_id, "session_id": {"$in": sorted(keys)}})
    return {
        doc["message_id"]: MessageFeedback(
            rating=doc["rating"],
            reason=doc["reason"],
            comment=_comment(keys[doc["session_id"]], doc["comment"]),
            updated_at=doc["updated_at"],
        )
        async for doc in found
    }


class FeedbackStore:
    def __init__(
        self, client: AsyncMongoClient[dict[str, Any]], database: str, *, keys: SessionKeys, rollups: Rollups
    ) -> None:
        self._db = client[database]
        self._keys = keys
        self._rollups = rollups

    async def ensure_indexes(self) -> None:
        """One rating per answer; the listing's order (all, per rating, per end user); erasure by
        session; and the turn a rating names."""
        await self._db.feedback.create_indexes(
            [
                IndexModel([("app_id", ASCENDING), ("message_id", ASCENDING)], unique=True),
                IndexModel([("app_id", ASCENDING), *_ORDER]),
                IndexModel([("app_id", ASCENDING), ("rating", ASCENDING), *_ORDER]),
                IndexModel([("app_id", ASCENDING), ("user", ASCENDING), *_ORDER]),
                IndexModel([("app_id", ASCENDING), ("session_id", ASCENDING)]),
            ]
        )
        await self._db.turns.create_indexes([IndexModel([("app_id", ASCENDING), ("message_id", ASCENDING)])])

    async def _turn(self, request: FeedbackSet) -> dict[str, Any] | None:
        """The rated turn, waiting up to ``wait_s`` for it to be stored."""
        scope: dict[str, Any] = {"app_id": request.app_id, "message_id": request.message_id}
        if request.session_id is not None:
            scope["session_id"] = request.session_id
        fields = {"session_id": 1, "user": 1, "occurred_at": 1}
        return await found_within(lambda: self._db.turns.find_one(scope, fields), wait_s=request.wait_s)

    async def set(self, request: FeedbackSet) -> FeedbackRecord:
        """Rate an answer of the app, or change its rating (``created_at`` is kept)."""
        turn = await self._turn(request)
        if turn is None:
            raise _not_found(request.message_id)
        session_id = turn["session_id"]
        key = await self._keys.get(request.app_id, session_id)
        if key is None:  # erased since the turn was read
            raise _not_found(request.message_id)
        ident = {"app_id": request.app_id, "message_id": request.message_id}
        now = datetime.now(UTC)
        update = {
            "$set": {
                "session_id": session_id,
                "user": turn.get("user"),
                # The rated turn's time: a day's analytics count the ratings of its turns.
                "asked_at": turn["occurred_at"],
                "rating": request.rating,
                "reason": request.reason,
                "comment": None if request.comment is None else seal(key, request.comment),
                "updated_at": now,
            },
            "$setOnInsert": {"created_at": now},
        }
        try:
            await self._db.feedback.update_one(ident, update, upsert=True)
        except DuplicateKeyError:  # two first ratings at once: the other inserted, so update it
            await self._db.feedback.update_one(ident, update, upsert=True)
        # An erasure that ran since the turn was read would leave this rating behind: undo it.
        if await self._db.turns.find_one(ident, {"_id": 1}) is None:
            await self._db.feedback.delete_one(ident)
            raise _not_found(request.message_id)
        await self._rollups.mark([(request.app_id, turn["occurred_at"])])
        doc = await self._db.feedback.find_one(ident)
        if doc is None:  # erased in the meantime
            raise _not_found(request.message_id)
        return FeedbackRecord(
            message_id=request.message_id,
            session_id=session_id,
            rating=doc["rating"],
            reason=doc["reason"],
            comment=request.comment,
            created_at=doc["created_at"],
            updated_at=doc["updated_at"],
        )

    def _filter(self, query: FeedbackQuery) -> dict[str, Any]:
        clauses: list[dict[str, Any]] = [{"app_id": query.app_id}]
        for field in ("user", "rating"):
            value = getattr(query, field)
            if value is not None:
                clauses.append({field: value})
        if query.start is not None:
            clauses.append({"created_at": {"$gte": query.start}})
        if query.end is not None:
            clauses.append({"created_at": {"$lt": query.end}})
        if query.cursor is not None:
            after_at, after_id = decode_cursor(query.cursor)
            clauses.append(
                {
                    "$or": [
                        {"created_at": {"$lt": after_at}},
                        {"created_at": after_at, "message_id": {"$lt": after_id}},
                    ]
                }
            )
        return {"$and": clauses}

    async def _turns(self, app_id: str, message_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        found = self._db.turns.find({"app_id": app_id, "message_id": {"$in": sorted(set(message_ids))}})
        return {turn["message_id"]: turn async for turn in found}

    async def list(self, query: FeedbackQuery) -> FeedbackList:
        """A page of ratings, first given newest first, with the question and answer each rates.

        A rating whose turn or key is gone (erased while being read) is left out; the cursor is
        still the page's last stored rating, so the next page starts after it.
        """
        docs = await self._db.feedback.find(self._filter(query)).sort(_ORDER).limit(query.limit + 1).to_list()
        page = docs[: query.limit]
        turns = await self._turns(query.app_id, (d["message_id"] for d in page))
        keys = await self._keys.many(query.app_id, (d["session_id"] for d in page))
        items: list[FeedbackItem] = []
        for doc in page:
            turn = turns.get(doc["message_id"])
            key = keys.get(doc["session_id"])
            if turn is None:
                continue
            question, answer = unseal(key, turn["user_message"]), unseal(key, turn["answer"])
            if question is None or answer is None:
                continue
            items.append(
                FeedbackItem(
                    message_id=doc["message_id"],
                    session_id=doc["session_id"],
                    user=doc["user"],
                    rating=doc["rating"],
                    reason=doc["reason"],
                    comment=_comment(key, doc["comment"]),
                    question=question,
                    answer=answer,
                    created_at=doc["created_at"],
                    updated_at=doc["updated_at"],
                )
            )
        more = len(docs) > query.limit
        last = page[-1] if more else None
        next_cursor = encode_cursor(last["created_at"], last["message_id"]) if last is not None else None
        return FeedbackList(feedback=items, next_cursor=next_cursor)
