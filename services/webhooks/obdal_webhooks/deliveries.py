"""Deliveries and their attempts (MongoDB ``webhook_deliveries``, this service's): the queue and the log.

One document per (event, endpoint), its id derived from both, so an event fanned out twice (a
redelivered stream message) is still one delivery. An endpoint's deliveries go out in the order
of their events on the stream (``seq``), one at a time: the next waits while the first is being
retried, so a receiver down for a while gets everything later, in order, each once (the same
``webhook-id`` on every try). Which replica sends an endpoint's deliveries is decided by a lease
per endpoint (``webhook_leases``), taken by a conditional update.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError

from obdal_common.cursors import decode_cursor, encode_cursor
from obdal_common.errors import NotFound
from obdal_common.schemas import (
    DeliveryAttempt,
    DeliveryLookup,
    DeliveryPage,
    DeliveryQuery,
    HookEvent,
    WebhookDelivery,
    WebhookEndpoint,
)

__all__ = ["DeliveryStore", "delivery_id"]

# A parked delivery (its endpoint disabled) waits here until the endpoint is enabled again.
_PARKED = datetime(9999, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def delivery_id(endpoint_id: str, event_id: str) -> str:
    return "dlv_" + hashlib.sha256(f"{endpoint_id} {event_id}".encode()).hexdigest()[:32]


def _delivery(doc: dict[str, Any]) -> WebhookDelivery:
    pending = doc["state"] == "pending" and doc["next_at"] != _PARKED
    return WebhookDelivery(
        delivery_id=doc["_id"],
        endpoint_id=doc["endpoint_id"],
        event_id=doc["event_id"],
        type=doc["type"],
        state=doc["state"],
        created_at=doc["created_at"],
        attempts=[DeliveryAttempt(**a) for a in doc["attempts"]],
        next_attempt_at=doc["next_at"] if pending else None,
    )


class DeliveryStore:
    def __init__(self, mongo: AsyncMongoClient[dict[str, Any]], db: str) -> None:
        self._db = mongo[db]
        self._deliveries = self._db.webhook_deliveries
        self._leases = self._db.webhook_leases

    async def ping(self) -> None:
        await self._db.command("ping")

    async def ensure_indexes(self) -> None:
        await self._deliveries.create_index(
            [("endpoint_id", ASCENDING), ("state", ASCENDING), ("seq", ASCENDING)]
        )
        await self._deliveries.create_index([("state", ASCENDING), ("next_at", ASCENDING)])
        await self._deliveries.create_index([("app_id", ASCENDING), ("session_id", ASCENDING)])
        await self._deliveries.create_index(
            [
                ("app_id", ASCENDING),
                ("endpoint_id", ASCENDING),
                ("created_at", DESCENDING),
                ("_id", DESCENDING),
            ]
        )

    async def enqueue(
        self, event: HookEvent, *, seq: int, payload: str, endpoints: list[WebhookEndpoint]
    ) -> None:
        """One pending delivery of ``event`` per endpoint (again: nothing changes)."""
        now = datetime.now(UTC)
        for endpoint in endpoints:
            doc: dict[str, Any] = {
                "app_id": event.app_id,
                "endpoint_id": endpoint.endpoint_id,
                "event_id": event.event_id,
                "type": event.type,
                # What erasing the session finds it by (every event of a conversation names it).
                "session_id": event.data.get("session_id"),
                "seq": seq,
                "payload": payload,
                "state": "pending",
                "created_at": now,
                "attempts": [],
                "step": 0,
                "next_at": now,
            }
            await self._deliveries.update_one(
                {"_id": delivery_id(endpoint.endpoint_id, event.event_id)}, {"$setOnInsert": doc}, upsert=True
            )

    async def due_endpoints(self, now: datetime) -> list[tuple[str, str]]:
        """(app, endpoint) of every endpoint with a delivery due."""
        found = await self._deliveries.distinct("endpoint_id", {"state": "pending", "next_at": {"$lte": now}})
        apps = {}
        for endpoint_id in found:
            doc = await self._deliveries.find_one(
                {"endpoint_id": endpoint_id, "state": "pending"}, {"app_id": 1}
            )
            if doc is not None:
                apps[endpoint_id] = doc["app_id"]
        return sorted((app, endpoint) for endpoint, app in apps.items())

    async def lease(self, endpoint_id: str, *, owner: str, until: datetime, now: datetime) -> bool:
        """Take (or renew) the right to send ``endpoint_id``'s deliveries until ``until``."""
        try:
            taken = await self._leases.find_one_and_update(
                {"_id": endpoint_id, "$or": [{"owner": owner}, {"until": {"$lte": now}}]},
                {"$set": {"owner": owner, "until": until}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # another replica holds it: the upsert found no match, then collided
            return False
        return taken is not None and taken["owner"] == owner

    async def release(self, endpoint_id: str, *, owner: str) -> None:
        await self._leases.update_one({"_id": endpoint_id, "owner": owner}, {"$set": {"until": _EPOCH}})

    async def head(self, endpoint_id: str) -> dict[str, Any] | None:
        """The endpoint's first undelivered delivery, due or not."""
        return await self._deliveries.find_one(
            {"endpoint_id": endpoint_id, "state": "pending"}, sort=[("seq", ASCENDING), ("_id", ASCENDING)]
        )

    async def record(
        self, doc: dict[str, Any], attempt: DeliveryAttempt, *, delays: tuple[float, ...]
    ) -> WebhookDelivery:
        """Log ``attempt``; the delivery is delivered, retried after its next delay, or failed."""
        ok = attempt.status_code is not None and 200 <= attempt.status_code < 300
        step = doc["step"]
        changes: dict[str, Any]
        if ok:
            changes = {"state": "delivered", "next_at": None}
        elif step < len(delays):
            changes = {"step": step + 1, "next_at": attempt.at + timedelta(seconds=delays[step])}
        else:
            changes = {"state": "failed", "next_at": None}
        updated = await self._deliveries.find_one_and_update(
            {"_id": doc["_id"]},
            {"$set": changes, "$push": {"attempts": _attempt_doc(attempt)}},
            return_document=ReturnDocument.AFTER,
        )
        return _delivery(updated if updated is not None else {**doc, **changes})

    async def park(self, endpoint_id: str) -> None:
        """Hold a disabled endpoint's pending deliveries until it is enabled."""
        await self._deliveries.update_many(
            {"endpoint_id": endpoint_id, "state": "pending"}, {"$set": {"next_at": _PARKED}}
        )

    async def unpark(self, endpoint_id: str) -> None:
        await self._deliveries.update_many(
            {"endpoint_id": endpoint_id, "state": "pending", "next_at": _PARKED},
            {"$set": {"next_at": datetime.now(UTC)}},
        )

    async def page(self, query: DeliveryQuery) -> DeliveryPage:
        match: dict[str, Any] = {"app_id": query.app_id, "endpoint_id": query.endpoint_id}
        if query.state is not None:
            match["state"] = query.state
        if query.cursor is not None:
            at, after = decode_cursor(query.cursor)
            match["$or"] = [{"created_at": {"$lt": at}}, {"created_at": at, "_id": {"$lt": after}}]
        docs = (
            await self._deliveries.find(match, {"payload": 0})
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(query.limit + 1)
            .to_list()
        )
        shown = docs[: query.limit]
        more = len(docs) > query.limit
        return DeliveryPage(
            deliveries=[_delivery(d) for d in shown],
            next_cursor=encode_cursor(shown[-1]["created_at"], shown[-1]["_id"]) if more else None,
        )

    async def replay(self, lookup: DeliveryLookup) -> WebhookDelivery:
        """Send again with a fresh schedule; it goes in its place in the endpoint's order."""
        updated = await self._deliveries.find_one_and_update(
            {"_id": lookup.delivery_id, "app_id": lookup.app_id, "endpoint_id": lookup.endpoint_id},
            {"$set": {"state": "pending", "step": 0, "next_at": datetime.now(UTC)}},
            projection={"payload": 0},
            return_document=ReturnDocument.AFTER,
        )
        if updated is None:
            raise NotFound(f"no delivery {lookup.delivery_id} of this endpoint", code="delivery_not_found")
        return _delivery(updated)

    async def delete_endpoint(self, endpoint_id: str) -> int:
        await self._leases.delete_one({"_id": endpoint_id})
        return (await self._deliveries.delete_many({"endpoint_id": endpoint_id})).deleted_count

    async def delete_app(self, app_id: str) -> None:
        await self._deliveries.delete_many({"app_id": app_id})

    async def erase_sessions(self, app_id: str, session_ids: list[str]) -> int:
        """Drop the deliveries of these sessions' events: their payloads hold the conversation."""
        found = await self._deliveries.delete_many({"app_id": app_id, "session_id": {"$in": session_ids}})
        return found.deleted_count


def _attempt_doc(attempt: DeliveryAttempt) -> dict[str, Any]:
    return {
        "at": attempt.at,
        "latency_ms": attempt.latency_ms,
        "status_code": attempt.status_code,
        "error": attempt.error,
    }
