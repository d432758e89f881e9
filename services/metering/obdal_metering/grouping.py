"""Grouping similar questions as they are stored: online leader clustering per (app, embedder).

A question joins the group whose seed (one member question's vector, its first member's when
the group was made) is the most similar to it by cosine similarity, if that similarity reaches
:data:`THRESHOLD`; otherwise it founds a new group and is its seed. One pass, no re-clustering:
a turn's group is decided once, when it is stored, so daily figures per group can be recomputed
from the stored turns alone (:mod:`obdal_metering.rollups`).

Calibrated on ``bench/data/support_intents.json`` (26 intents, 234 questions written the way
customers write them: terse, chatty, misspelt) with the offline MiniLM embedder
(docs/support.md has the table): at 0.40, in the file's order, purity 0.83, adjusted
Rand index 0.41, 85 groups of which 47 singletons (5 shuffled orders: 0.83, 0.34, 93, 42). Higher
thresholds are purer with ever more singletons (0.45: 0.90, 0.39, 112, 70); lower ones mix
intents (0.35: purity 0.74). Variants measured and not kept: a running centroid (0.45: 0.84,
0.35) is no better and is an average of every member, so erasing one member would leave the
group derived from it; several seeds per group (the first 3 members; 0.45: 0.86, 0.35) no better
either. A seed is one member turn's vector, stored sealed with that turn's session key; erasing
that turn re-seeds the group from its oldest remaining member, or drops it (:class:`Groups`).

Vectors of different embedders are never compared: each (app, embedder) has its own groups.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pymongo import ASCENDING, AsyncMongoClient, IndexModel

from obdal_common.ids import new_id
from obdal_metering.rollups import mongo_now
from obdal_metering.sealing import SessionKeys, unseal

__all__ = ["THRESHOLD", "Groups", "LeaderIndex", "decode_vector", "group_vectors"]

log = logging.getLogger(__name__)

# Cosine similarity at or above which a question joins a group (calibrated, see above).
THRESHOLD = 0.40

Vector = np.ndarray[Any, np.dtype[np.float32]]


def decode_vector(raw: bytes) -> Vector | None:
    """A unit vector from a turn event's ``question_vector`` (float16, little-endian), or ``None``."""
    if not raw or len(raw) % 2:  # none, or not float16s: grouped with nothing
        return None
    vector = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 and np.isfinite(norm) else None


class LeaderIndex:
    """The seeds of one (app, embedder)'s groups, and the assignment rule.

    Seeds are rows of one matrix grown by doubling, so founding the 10,000th group copies
    nothing and a question is compared with every seed in one product (10,000 x 384: ~1 ms).
    """

    def __init__(self, threshold: float = THRESHOLD) -> None:
        self.threshold = threshold
        self._rows: dict[str, int] = {}
        self._ids: list[str] = []
        self._seeds: Vector = np.zeros((0, 0), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._ids)

    def accepts(self, vector: Vector) -> bool:
        """Whether ``vector`` has its seeds' dimension (any, while there are none)."""
        return not self._ids or self._seeds.shape[1] == vector.shape[0]

    def nearest(self, vector: Vector) -> str | None:
        """The group ``vector`` joins, or ``None`` if it founds one."""
        if not self._ids:
            return None
        similarities = self._seeds[: len(self._ids)] @ vector
        best = int(np.argmax(similarities))
        return self._ids[best] if float(similarities[best]) >= self.threshold else None

    def put(self, group_id: str, seed: Vector) -> None:
        """Add a group, or replace its seed."""
        row = self._rows.get(group_id)
        if row is None:
            row = len(self._ids)
            if row == len(self._seeds) or not row:
                grown = np.zeros((max(16, 2 * row), seed.shape[0]), dtype=np.float32)
                if row:
                    grown[:row] = self._seeds[:row]
                self._seeds = grown
            self._rows[group_id] = row
            self._ids.append(group_id)
        self._seeds[row] = seed

    def remove(self, group_id: str) -> None:
        """Forget a group (its seed's row is taken by the last one's)."""
        row = self._rows.pop(group_id, None)
        if row is None:
            return
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._ids[row] = moved
            self._rows[moved] = row
            self._seeds[row] = self._seeds[last]
        self._ids.pop()


def group_vectors(vectors: np.ndarray[Any, Any], *, threshold: float = THRESHOLD) -> list[int]:
    """The group of each row of ``vectors`` (unit or not), numbered from 0 in order of founding,
    as the store groups them when they arrive in this order."""
    index = LeaderIndex(threshold=threshold)
    labels: list[int] = []
    for row in np.asarray(vectors, dtype=np.float32):
        norm = float(np.linalg.norm(row))
        vector = row / norm if norm > 0 else row
        found = index.nearest(vector)
        if found is None:
            found = str(len(index))
            index.put(found, vector)
        labels.append(int(found))
    return labels


def _vector_of(turn: dict[str, Any], key: bytes | None) -> Vector | None:
    opened = unseal(key, turn.get("question_vector") or "")
    return decode_vector(base64.b64decode(opened)) if opened else None


class Groups:
    """An app's question groups in MongoDB (``question_groups``, no text: a seed turn's ids), and
    a per-process index of their seeds.

    Metering replicas share the collection: each brings its index up to date from the documents
    changed since it last looked, before every batch (one query). A group re-seeded or dropped
    keeps its document (``seed`` ``None`` when dropped) so other replicas learn of it.
    """

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str, *, keys: SessionKeys) -> None:
        self._db = client[database]
        self._keys = keys
        self._indexes: dict[tuple[str, str], LeaderIndex] = {}
        self._synced: dict[tuple[str, str], datetime] = {}
        self._applied: dict[str, datetime] = {}  # group id -> the change of it last applied

    async def ensure_indexes(self) -> None:
        await self._db.question_groups.create_indexes(
            [IndexModel([("app_id", ASCENDING), ("embedder", ASCENDING), ("updated_at", ASCENDING)])]
        )
        await self._db.turns.create_indexes(
            [IndexModel([("app_id", ASCENDING), ("group_id", ASCENDING), ("occurred_at", ASCENDING)])]
        )

    async def _sync(self, app_id: str, embedder: str) -> LeaderIndex:
        """The (app, embedder)'s index, with every group document changed since the last look."""
        scope = (app_id, embedder)
        index = self._indexes.setdefault(scope, LeaderIndex())
        since = self._synced.get(scope, datetime.min.replace(tzinfo=UTC))
        # ``$gte``: another replica may write at the very time of the last change seen.
        found = await self._db.question_groups.find(
            {"app_id": app_id, "embedder": embedder, "updated_at": {"$gte": since}}
        ).to_list()
        changed = [doc for doc in found if self._applied.get(doc["_id"]) != doc["updated_at"]]
        if not changed:
            return index
        self._synced[scope] = max(doc["updated_at"] for doc in changed)
        seeds = {doc["seed"]: doc["_id"] for doc in changed if doc.get("seed")}
        for doc in changed:
            index.remove(doc["_id"])
            self._applied[doc["_id"]] = doc["updated_at"]
        turns = await self._db.turns.find(
            {"app_id": app_id, "message_id": {"$in": sorted(seeds)}},
            {"message_id": 1, "session_id": 1, "question_vector": 1},
        ).to_list()
        keys = await self._keys.many(app_id, (t["session_id"] for t in turns))
        for turn in turns:
            vector = _vector_of(turn, keys.get(turn["session_id"]))
            if vector is not None and index.accepts(vector):
                index.put(seeds[turn["message_id"]], vector)
        return index

    async def assign(self, turns: Sequence[dict[str, Any]], vectors: Sequence[Vector | None]) -> None:
        """Set ``group_id`` on each turn document with a vector (in order: a question may join a
        group founded by an earlier one of the same batch), founding groups as needed."""
        scopes = {(t["app_id"], t["embedder"]) for t, v in zip(turns, vectors, strict=True) if v is not None}
        indexes = {scope: await self._sync(*scope) for scope in sorted(scopes)}
        founded: list[dict[str, Any]] = []
        now = mongo_now()
        for turn, vector in zip(turns, vectors, strict=True):
            if vector is None:
                continue
            index = indexes[(turn["app_id"], turn["embedder"])]
            if not index.accepts(vector):  # not the embedder's dimension: not comparable
                continue
            group_id = index.nearest(vector)
            if group_id is None:
                group_id = new_id("grp")
                index.put(group_id, vector)
                self._applied[group_id] = now
                founded.append(
                    {
                        "_id": group_id,
                        "app_id": turn["app_id"],
                        "embedder": turn["embedder"],
                        "seed": turn["message_id"],
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            turn["group_id"] = group_id
        if founded:
            # Before the turns: a crash in between leaves a group whose seed turn never came,
            # which is ignored (no vector to load) and joined by nobody.
            await self._db.question_groups.insert_many(founded)

    async def seeds(self, app_id: str, group_ids: Iterable[str]) -> dict[str, str]:
        """The seed turn (message id) of each of these groups that has one."""
        found = self._db.question_groups.find({"app_id": app_id, "_id": {"$in": sorted(set(group_ids))}})
        return {doc["_id"]: doc["seed"] async for doc in found if doc.get("seed")}

    async def reseed(self, app_id: str, group_ids: Iterable[str]) -> None:
        """Give each of these groups whose seed turn is gone its oldest remaining member as seed,
        or drop it if none remains: a group keeps nothing of an erased turn."""
        wanted = sorted(set(group_ids))
        if not wanted:
            return
        groups = await self._db.question_groups.find({"app_id": app_id, "_id": {"$in": wanted}}).to_list()
        seeds = [doc["seed"] for doc in groups if doc.get("seed")]
        alive = {
            t["message_id"]
            for t in await self._db.turns.find(
                {"app_id": app_id, "message_id": {"$in": seeds}}, {"message_id": 1}
            ).to_list()
        }
        now = mongo_now()
        for doc in groups:
            if doc.get("seed") in alive:
                continue
            oldest = await self._db.turns.find_one(
                {"app_id": app_id, "group_id": doc["_id"]},
                {"message_id": 1},
                sort=[("occurred_at", ASCENDING)],
            )
            seed = oldest["message_id"] if oldest else None
            await self._db.question_groups.update_one(
                {"_id": doc["_id"]}, {"$set": {"seed": seed, "updated_at": now}}
            )
            index = self._indexes.get((app_id, doc["embedder"]))
            if index is not None:
                index.remove(doc["_id"])  # the next look loads the new seed
            log.info("group %s of app %s re-seeded (%s)", doc["_id"], app_id, seed or "dropped")
