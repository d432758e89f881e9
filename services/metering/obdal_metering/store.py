"""MongoDB storage of usage, turns and audit events, and the queries over them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

import msgspec
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.errors import BulkWriteError

from obdal_common.cursors import decode_cursor, decode_group_cursor, encode_cursor, encode_group_cursor
from obdal_common.schemas import (
    AuditEvent,
    AuditPage,
    AuditQuery,
    UsageBucket,
    UsageEvent,
    UsageQuery,
    UsageRecordPage,
    UsageRecordsQuery,
    UsageReport,
)

__all__ = ["COLLECTIONS", "MeteringStore"]

# Event subject suffix -> collection.
COLLECTIONS = {"usage": "usage_events", "turn": "turns", "audit": "audit"}
_DUPLICATE_KEY = 11000
_GROUP_FIELD = {
    "day": {"$dateToString": {"format": "%Y-%m-%d", "date": "$occurred_at"}},
    "model": "$model",
    "key": "$key_id",
}


class MeteringStore:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._client = client
        self._db = client[database]

    async def ensure_indexes(self) -> None:
        """Idempotency (unique event ids) and the indexes every query uses."""
        for name in COLLECTIONS.values():
            await self._db[name].create_indexes([IndexModel([("event_id", ASCENDING)], unique=True)])
        await self._db.usage_events.create_indexes(
            [
                IndexModel([("app_id", ASCENDING), ("occurred_at", ASCENDING)]),
                IndexModel([("app_id", ASCENDING), ("key_id", ASCENDING), ("occurred_at", ASCENDING)]),
            ]
        )
        await self._db.turns.create_indexes(
            [IndexModel([("app_id", ASCENDING), ("session_id", ASCENDING), ("occurred_at", ASCENDING)])]
        )
        await self._db.audit.create_indexes(
            [
                IndexModel([("app_id", ASCENDING), ("occurred_at", DESCENDING)]),
                IndexModel([("occurred_at", DESCENDING), ("event_id", DESCENDING)]),
            ]
        )

    async def insert(self, kind: str, documents: Sequence[dict[str, Any]]) -> int:
        """Insert events; ones already stored (same event id) are skipped. Returns new ones."""
        if not documents:
            return 0
        try:
            result = await self._db[COLLECTIONS[kind]].insert_many(list(documents), ordered=False)
            return len(result.inserted_ids)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            others = [e for e in errors if e.get("code") != _DUPLICATE_KEY]
            if others:
                raise
            return int(exc.details.get("nInserted", len(documents) - len(errors)))

    async def stored_event_ids(self, kind: str, event_ids: Sequence[str]) -> set[str]:
        """Which of these events are stored already (redeliveries)."""
        if not event_ids:
            return set()
        found = self._db[COLLECTIONS[kind]].find({"event_id": {"$in": list(event_ids)}}, {"event_id": 1})
        return {doc["event_id"] async for doc in found}

    async def usage(self, query: UsageQuery) -> UsageReport:
        """Totals of an app's usage over whole UTC days, both ends inclusive, and a page of their
        breakdown (groups in ascending order)."""
        start = datetime.combine(query.start_date, time.min, tzinfo=UTC)
        end = datetime.combine(query.end_date + timedelta(days=1), time.min, tzinfo=UTC)
        match: dict[str, Any] = {"app_id": query.app_id, "occurred_at": {"$gte": start, "$lt": end}}
        if query.key_id:
            match["key_id"] = query.key_id
        pipeline: list[dict[str, Any]] = [
            {"$match": match},
            {
                "$group": {
                    "_id": _GROUP_FIELD[query.group_by],
                    "requests": {"$sum": 1},
                    "prompt_tokens": {"$sum": "$prompt_tokens"},
                    "completion_tokens": {"$sum": "$completion_tokens"},
                    "total_tokens": {"$sum": "$total_tokens"},
                    "cost": {"$sum": "$cost"},
                }
            },
        ]
        cursor = await self._db.usage_events.aggregate(pipeline)
        rows = [row async for row in cursor]
        buckets = [
            UsageBucket(
                group=str(row["_id"]),
                requests=int(row["requests"]),
                prompt_tokens=int(row["prompt_tokens"]),
                completion_tokens=int(row["completion_tokens"]),
                total_tokens=int(row["total_tokens"]),
                cost=round(float(row["cost"]), 8),
            )
            for row in rows
        ]
        # Sorted here, not in MongoDB, so the order is the one the cursor compares with.
        buckets.sort(key=lambda b: b.group)
        after = decode_group_cursor(query.cursor, query.group_by) if query.cursor else None
        rest = [b for b in buckets if after is None or b.group > after]
        page = rest if query.limit is None else rest[: query.limit]
        more = len(page) < len(rest)
        # The same filter: handoff counts have the usage events' fields (obdal_metering.handoffs).
        counted = await self._db.handoff_counts.aggregate(
            [{"$match": match}, {"$group": {"_id": "$kind", "n": {"$sum": 1}}}]
        )
        handoffs = {row["_id"]: int(row["n"]) async for row in counted}
        return UsageReport(
            handoffs=handoffs.get("handoff", 0),
            agent_messages=handoffs.get("agent_message", 0),
            start_date=query.start_date,
            end_date=query.end_date,
            group_by=query.group_by,
            total_requests=sum(b.requests for b in buckets),
            prompt_tokens=sum(b.prompt_tokens for b in buckets),
            completion_tokens=sum(b.completion_tokens for b in buckets),
            total_tokens=sum(b.total_tokens for b in buckets),
            total_cost=round(sum(b.cost for b in buckets), 8),
            breakdown=page,
            next_cursor=encode_group_cursor(query.group_by, page[-1].group) if more else None,
        )

    async def usage_records(self, query: UsageRecordsQuery) -> UsageRecordPage:
        """A page of the app's usage events, oldest first, keyed by (time, event id)."""
        match: dict[str, Any] = {"app_id": query.app_id}
        if query.cursor is not None:
            at, event_id = decode_cursor(query.cursor)
            match["$or"] = [
                {"occurred_at": {"$gt": at}},
                {"occurred_at": at, "event_id": {"$gt": event_id}},
            ]
        cursor = (
            self._db.usage_events.find(match, {"_id": 0})
            .sort([("occurred_at", ASCENDING), ("event_id", ASCENDING)])
            .limit(query.limit + 1)
        )
        rows = [row async for row in cursor]
        records = [msgspec.convert(row, UsageEvent) for row in rows[: query.limit]]
        more = len(rows) > query.limit
        last = records[-1] if records else None
        return UsageRecordPage(
            records=records,
            next_cursor=encode_cursor(last.occurred_at, last.event_id) if more and last else None,
        )

    async def ping(self) -> None:
        await self._client.admin.command("ping")

    async def audit(self, query: AuditQuery) -> AuditPage:
        """A page of audit events, newest first, optionally of one app, one action and a time range."""
        match: dict[str, Any] = {}
        if query.app_id is not None:
            match["app_id"] = query.app_id
        if query.action is not None:
            match["action"] = query.action
        window: dict[str, datetime] = {}
        if query.since is not None:
            window["$gte"] = query.since
        if query.until is not None:
            window["$lt"] = query.until
        if window:
            match["occurred_at"] = window
        if query.before_at is not None and query.before_id is not None:
            match["$or"] = [
                {"occurred_at": {"$lt": query.before_at}},
                {"occurred_at": query.before_at, "event_id": {"$lt": query.before_id}},
            ]
        cursor = (
            self._db.audit.find(match, {"_id": 0})
            .sort([("occurred_at", DESCENDING), ("event_id", DESCENDING)])
            .limit(query.limit + 1)
        )
        rows = [row async for row in cursor]
        items = [msgspec.convert(row, AuditEvent) for row in rows[: query.limit]]
        return AuditPage(items=items, has_more=len(rows) > query.limit)
