"""Erasing session content: on request (a session, an end user) and by per-app retention.

Erasure (of a session, an end user, or a whole app when it is deleted) deletes turns, their
summaries, their ratings (``feedback``), their handoffs (contact details included) and people's
replies, and lets the sessions out of ``obdal_handoffs``; it re-seeds the question
groups whose seed was one of them and recomputes the analytics of their days before it answers
(:mod:`obdal_metering.grouping`, :mod:`obdal_metering.rollups`); usage events stay (they hold
no content). A tombstone per erased session and end user makes the consumer drop
turn events of that session or user that were still in flight, so an erased
conversation cannot reappear; turns that happen after the erasure (the same
session id used again) are kept, so the session starts fresh.

Deleting from MongoDB does not take content off its disk (journal, oplog, freed pages), so
erasure also destroys the session's sealing key (:mod:`obdal_metering.sealing`), right after
the tombstones: from then on no copy MongoDB keeps can be read. Retention destroys the key of
a session once all its turns are past the policy; turns of a session still in use stay
readable in such copies until the session goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pymongo import ASCENDING, AsyncMongoClient, IndexModel, UpdateOne
from pymongo.errors import PyMongoError

from obdal_common import subjects
from obdal_common.errors import BadRequest
from obdal_common.schemas import (
    EraseAppRequest,
    EraseRequest,
    EraseResult,
    RetentionPolicy,
    RetentionQuery,
)
from obdal_metering.grouping import Groups
from obdal_metering.rollups import Rollups
from obdal_metering.sealing import SessionKeys
from obdal_metering.sessions import SessionKey, SessionStore

__all__ = ["Eraser"]

log = logging.getLogger(__name__)

# Tombstones only need to outlive the events stream's redelivery horizon (14 days).
_TOMBSTONE_TTL_S = 15 * 24 * 3600


def _session_tombstone(app_id: str, session_id: str) -> str:
    return f"{app_id}:s:{session_id}"


def _user_tombstone(app_id: str, user: str) -> str:
    return f"{app_id}:u:{user}"


def _app_tombstone(app_id: str) -> str:
    return f"{app_id}:a"


class Eraser:
    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        database: str,
        sessions: SessionStore,
        *,
        keys: SessionKeys,
        groups: Groups,
        rollups: Rollups,
        handoffs: KeyValue,
    ) -> None:
        self._db = client[database]
        self._handoffs = handoffs
        self._sessions = sessions
        self._keys = keys
        self._groups = groups
        self._rollups = rollups
        self.retention_erased = 0

    async def ensure_indexes(self) -> None:
        """Tombstones expire once no event they guard against can still be delivered."""
        await self._db.erasures.create_indexes(
            [IndexModel([("erased_at", ASCENDING)], expireAfterSeconds=_TOMBSTONE_TTL_S)]
        )

    async def without_erased(self, turns: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The turn documents that happened after any erasure of their session or end user."""
        if not turns:
            return []
        ids = {_session_tombstone(t["app_id"], t["session_id"]) for t in turns}
        ids |= {_user_tombstone(t["app_id"], t["user"]) for t in turns if t.get("user") is not None}
        ids |= {_app_tombstone(t["app_id"]) for t in turns}
        found = await self._db.erasures.find({"_id": {"$in": sorted(ids)}}).to_list()
        erased_at = {doc["_id"]: doc["erased_at"] for doc in found}
        if not erased_at:
            return list(turns)
        kept = []
        for turn in turns:
            guards = [_session_tombstone(turn["app_id"], turn["session_id"]), _app_tombstone(turn["app_id"])]
            if turn.get("user") is not None:
                guards.append(_user_tombstone(turn["app_id"], turn["user"]))
            if all(g not in erased_at or turn["occurred_at"] > erased_at[g] for g in guards):
                kept.append(turn)
            else:
                log.info("dropping a turn of erased session %s", turn["session_id"])
        return kept

    async def erase(self, request: EraseRequest) -> EraseResult:
        """Erase one session or every session of one end user; the ids of the sessions erased."""
        if (request.session_id is None) == (request.user is None):
            raise BadRequest("erase exactly one session or one user", code="invalid_erasure")
        app_id = request.app_id
        now = datetime.now(UTC)
        if request.session_id is not None:
            session_ids = {request.session_id}
            tombstones = [_session_tombstone(app_id, request.session_id)]
        else:
            user = request.user
            turns = self._db.turns.find({"app_id": app_id, "user": user}, {"session_id": 1})
            summaries = self._db.sessions.find({"app_id": app_id, "user": user}, {"session_id": 1})
            session_ids = {d["session_id"] for d in await turns.to_list()}
            session_ids |= {d["session_id"] for d in await summaries.to_list()}
            tombstones = [_user_tombstone(app_id, str(user))]
        tombstones += [_session_tombstone(app_id, s) for s in session_ids]
        scope = {"app_id": app_id, "session_id": {"$in": sorted(session_ids)}}
        return await self._erase_sessions(app_id, session_ids, tombstones, scope, now=now)

    async def erase_app(self, request: EraseAppRequest) -> EraseResult:
        """Erase every session of an app (it is being deleted), and its retention policy. An app
        tombstone (one for all its sessions) keeps its turn events still in flight out; safe to
        repeat."""
        app_id = request.app_id
        scope = {"app_id": app_id}
        session_ids = set(await self._db.turns.distinct("session_id", scope))
        session_ids |= set(await self._db.sessions.distinct("session_id", scope))
        result = await self._erase_sessions(
            app_id, session_ids, [_app_tombstone(app_id)], scope, now=datetime.now(UTC)
        )
        await self._db.retention.delete_one({"_id": app_id})
        return result

    async def _erase_sessions(
        self,
        app_id: str,
        session_ids: set[str],
        tombstones: list[str],
        scope: dict[str, Any],
        *,
        now: datetime,
    ) -> EraseResult:
        """Erase the sessions ``scope`` selects (``session_ids``), behind these tombstones."""
        # Tombstones first: a turn stored between the two steps is then dropped, not kept.
        await self._db.erasures.bulk_write(
            [UpdateOne({"_id": t}, {"$set": {"erased_at": now}}, upsert=True) for t in tombstones]
        )
        await self._keys.destroy(app_id, session_ids)
        touched = await self._db.turns.find(scope, {"occurred_at": 1, "group_id": 1}).to_list()
        deleted = await self._db.turns.delete_many(scope)
        summaries_deleted = await self._db.sessions.delete_many(scope)
        await self._db.feedback.delete_many(scope)
        handed = await self._db.handoffs.find(scope, {"requested_at": 1}).to_list()
        await self._db.handoffs.delete_many(scope)
        await self._db.agent_messages.delete_many(scope)
        for session_id in session_ids:  # nobody waits on an erased session any more
            with contextlib.suppress(KeyNotFoundError):
                await self._handoffs.purge(subjects.handoff_entry(app_id, session_id))
        await self._forget(app_id, touched, also=[d["requested_at"] for d in handed])
        erased = sorted(session_ids) if deleted.deleted_count or summaries_deleted.deleted_count else []
        return EraseResult(session_ids=erased, messages_erased=2 * deleted.deleted_count)

    async def _forget(
        self, app_id: str, turns: Sequence[dict[str, Any]], *, also: Sequence[datetime] = ()
    ) -> None:
        """After these turns were deleted: re-seed their groups and recompute their days' analytics
        before answering, so that no group and no rollup keeps anything of them."""
        await self._groups.reseed(app_id, {t["group_id"] for t in turns if t.get("group_id")})
        await self._rollups.recompute_now(app_id, [*(t["occurred_at"] for t in turns), *also])

    async def retention(self, query: RetentionQuery) -> RetentionPolicy:
        """The app's retention policy (none: content is kept until erased)."""
        doc = await self._db.retention.find_one({"_id": query.app_id})
        return RetentionPolicy(app_id=query.app_id, session_ttl_days=doc["session_ttl_days"] if doc else None)

    async def set_retention(self, policy: RetentionPolicy) -> RetentionPolicy:
        """Set (or with ``None`` remove) the app's retention; applied by the next sweep."""
        if policy.session_ttl_days is not None and policy.session_ttl_days < 1:
            raise BadRequest("session_ttl_days must be at least 1", code="invalid_retention")
        if policy.session_ttl_days is None:
            await self._db.retention.delete_one({"_id": policy.app_id})
        else:
            await self._db.retention.replace_one(
                {"_id": policy.app_id}, {"session_ttl_days": policy.session_ttl_days}, upsert=True
            )
        return policy

    async def sweep(self) -> int:
        """Erase the turns older than each app's retention; the number of turns erased."""
        erased = 0
        now = datetime.now(UTC)
        for policy in await self._db.retention.find({}).to_list():
            app_id = policy["_id"]
            expired = {
                "app_id": app_id,
                "occurred_at": {"$lt": now - timedelta(days=policy["session_ttl_days"])},
            }
            found = await self._db.turns.find(
                expired, {"session_id": 1, "message_id": 1, "occurred_at": 1, "group_id": 1}
            ).to_list()
            touched: set[SessionKey] = {(app_id, d["session_id"]) for d in found}
            if not touched:
                continue
            count = (await self._db.turns.delete_many(expired)).deleted_count
            rated = sorted({d["message_id"] for d in found})
            await self._db.feedback.delete_many({"app_id": app_id, "message_id": {"$in": rated}})
            cutoff = expired["occurred_at"]
            await self._db.agent_messages.delete_many({"app_id": app_id, "occurred_at": cutoff})
            await self._db.handoffs.delete_many(
                {"app_id": app_id, "requested_at": cutoff, "status": "resolved"}
            )
            await self._sessions.refresh(touched, shrinking=True)
            ids = sorted(session_id for _, session_id in touched)
            left = await self._db.turns.distinct("session_id", {"app_id": app_id, "session_id": {"$in": ids}})
            await self._keys.destroy(app_id, set(ids) - set(left))
            # The sessions left now start later: their new first day gains a conversation.
            moved = await self._db.sessions.find(
                {"app_id": app_id, "session_id": {"$in": ids}}, {"started_at": 1}
            ).to_list()
            await self._forget(app_id, found, also=[d["started_at"] for d in moved])
            log.info("retention erased %d turns of app %s", count, app_id)
            erased += count
        return erased

    async def sweep_until(self, stop: asyncio.Event, *, every_s: float) -> None:
        """Apply every app's retention policy every ``every_s`` until ``stop``."""
        while not stop.is_set():
            try:
                self.retention_erased += await self.sweep()
            except PyMongoError as exc:
                log.warning("retention sweep failed, retrying later: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
