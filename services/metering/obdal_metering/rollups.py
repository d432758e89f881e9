"""Daily analytics rollups per (app, day), recomputed from that day's turns and ratings.

Aggregating an app's turns per request cannot answer in 300 ms on SecantusDB (~5 ms per
operation; a find of one day's 3,300 turns takes ~0.3 s, 30 days ~8 s), so metering keeps one
document per (app, UTC day) in ``analytics_days``: the day's figures, its end users, and one row
per question group (with the ids of its newest turns), cited file and curated answer. A 30-day
report reads 30 of them: measured 49-96 ms p50 through the gateway for 1-3 days of 3,300 turns
(docs/support.md). It is **recomputed** from the day's turns (and the ratings of
them; ~0.5 s for 3,300 turns), never incremented: a redelivered turn cannot count twice, and
after an erasure or a retention sweep the day holds exactly what is left, end users' ids included.

Why one document per day, not one per (app, day, group): the day is the unit of recomputation.
Replacing one document is atomic, so a reader never sees half a recompute, and the replace is
guarded by when its read began, so a recompute that read earlier can never overwrite a later
one (two replicas, or a refresh racing an erasure). Its rows are one msgpack blob: SecantusDB
returns a 1,500-row day as sub-documents in ~37 ms, as one binary field in ~1 ms.

Changes mark their (app, day) dirty in ``analytics_dirty`` (a new turn, a rating set or changed);
:meth:`Rollups.refresh_until` recomputes a day once it has been dirty for
``OBDAL_ANALYTICS_REFRESH_S``, so a burst of turns costs one recompute. A replica claims a day
with a lease before recomputing it; a change stored while it read leaves the mark, and the day
is recomputed again. Erasure and retention do not wait: they recompute the days they touched
before answering (:mod:`obdal_metering.erasure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import msgspec
from bson import Binary
from pymongo import ASCENDING, AsyncMongoClient, IndexModel, UpdateOne
from pymongo.errors import DuplicateKeyError, PyMongoError

from obdal_common.schemas import AnalyticsFigures, FeedbackRating, TurnOutcome

__all__ = [
    "MAX_EXAMPLES",
    "TOP_EXAMPLES",
    "CuratedRow",
    "DayRollup",
    "Example",
    "FileRow",
    "GroupRow",
    "Rollups",
    "citations",
    "merge_groups",
    "mongo_now",
    "newest_examples",
]

log = logging.getLogger(__name__)

# Examples kept per group and day: of its unanswered turns as many as a page may show, of all
# its turns as many as a top question shows (a day of 300 groups is then ~70 KB, not ~500).
MAX_EXAMPLES = 20
TOP_EXAMPLES = 3
# A replica that claimed a day and died lets another take it after this long.
_LEASE_S = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Example(msgspec.Struct, array_like=True):
    """A turn shown as an example of its group: ids and figures only, its words stay in the turn."""

    message_id: str
    asked_at: datetime
    outcome: TurnOutcome
    rating: FeedbackRating | None


class GroupRow(msgspec.Struct, array_like=True):
    """One question group's figures on one day (small talk is in no group), with its newest turns
    and newest unanswered turns, newest first, so examples are read by id, not searched for."""

    group_id: str
    count: int
    unanswered: int
    declined: int
    rated_down: int
    handed_off: int
    last_asked_at: datetime
    latest: list[Example]
    latest_unanswered: list[Example]


class FileRow(msgspec.Struct, array_like=True):
    file_id: str
    filename: str
    citations: int


class CuratedRow(msgspec.Struct, array_like=True):
    answer_id: str
    served: int
    feedback_up: int
    feedback_down: int


class _Rows(msgspec.Struct, array_like=True):
    users: list[str]
    groups: list[GroupRow]
    files: list[FileRow]
    curated: list[CuratedRow]


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Rows)


@dataclass(frozen=True)
class DayRollup:
    day: date
    figures: AnalyticsFigures
    users: list[str]
    groups: list[GroupRow]
    files: list[FileRow]
    curated: list[CuratedRow]


def citations(sources: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """The files a turn's passages came from, one entry per passage cited, kept in clear beside
    the sealed sources so a day's citations count without opening them (file ids and names are
    the app's own documents', not its end users' words)."""
    return [
        {"file_id": s["file_id"], "filename": s["filename"]}
        for s in sources
        if s.get("kind", "passage") == "passage"
    ]


def mongo_now() -> datetime:
    """Now, to the millisecond MongoDB keeps, so a time read back compares equal to it."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _day_id(app_id: str, day: date) -> str:
    return f"{app_id}|{day.isoformat()}"


def _bounds(day: date) -> dict[str, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return {"$gte": start, "$lt": start + timedelta(days=1)}


def _newest(examples: Iterable[Example], keep: int = MAX_EXAMPLES) -> list[Example]:
    return sorted(examples, key=lambda e: (e.asked_at, e.message_id), reverse=True)[:keep]


def _handed_off(turn: dict[str, Any]) -> bool:
    """A turn a person had to take: asked while its session was handed off, or the last question
    before the customer asked for a person (metering flags it then, docs/handoff.md)."""
    return turn.get("outcome") == "handed_off" or bool(turn.get("handed_off"))


def _rows(
    turns: Sequence[dict[str, Any]], ratings: dict[str, FeedbackRating]
) -> tuple[dict[str, int], _Rows]:
    outcomes = Counter(t.get("outcome", "answered") for t in turns)
    users = sorted({t["user"] for t in turns if t.get("user") is not None})
    groups: dict[str, GroupRow] = {}
    files: dict[str, FileRow] = {}
    curated: dict[str, CuratedRow] = {}
    for turn in turns:
        rating = ratings.get(turn["message_id"])
        declined = turn.get("outcome") == "declined"
        handed_off = _handed_off(turn)
        group_id = turn.get("group_id")
        if group_id is not None and turn.get("outcome") != "smalltalk":
            row = groups.setdefault(group_id, GroupRow(group_id, 0, 0, 0, 0, 0, turn["occurred_at"], [], []))
            unanswered = declined or rating == "down" or handed_off
            row.count += 1
            row.declined += declined
            row.rated_down += rating == "down"
            row.handed_off += handed_off
            row.unanswered += unanswered
            row.last_asked_at = max(row.last_asked_at, turn["occurred_at"])
            example = Example(
                turn["message_id"], turn["occurred_at"], turn.get("outcome", "answered"), rating
            )
            row.latest.append(example)
            if unanswered:
                row.latest_unanswered.append(example)
        for cited in turn.get("cited", []):
            entry = files.setdefault(cited["file_id"], FileRow(cited["file_id"], cited["filename"], 0))
            entry.citations += 1
        answer_id = turn.get("curated_answer_id")
        if answer_id is not None:
            use = curated.setdefault(answer_id, CuratedRow(answer_id, 0, 0, 0))
            use.served += 1
            use.feedback_up += rating == "up"
            use.feedback_down += rating == "down"
    for row in groups.values():
        row.latest = _newest(row.latest, TOP_EXAMPLES)
        row.latest_unanswered = _newest(row.latest_unanswered)
    by_rating = Counter(ratings.get(t["message_id"]) for t in turns)
    figures = {
        "messages": len(turns),
        "users": len(users),
        "answered": outcomes["answered"],
        "declined": outcomes["declined"],
        "curated": outcomes["curated"],
        "smalltalk": outcomes["smalltalk"],
        "handed_off": sum(_handed_off(t) for t in turns),
        "feedback_up": by_rating["up"],
        "feedback_down": by_rating["down"],
    }
    return figures, _Rows(
        users=users, groups=list(groups.values()), files=list(files.values()), curated=list(curated.values())
    )


class Rollups:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str, *, refresh_s: float) -> None:
        self._db = client[database]
        self._refresh_s = refresh_s

    async def ensure_indexes(self) -> None:
        """A day's rollup and its dirty mark; the ratings of a day's turns."""
        await self._db.analytics_days.create_indexes(
            [IndexModel([("app_id", ASCENDING), ("day", ASCENDING)])]
        )
        await self._db.analytics_dirty.create_indexes(
            [IndexModel([("since", ASCENDING)]), IndexModel([("app_id", ASCENDING), ("day", ASCENDING)])]
        )
        await self._db.feedback.create_indexes([IndexModel([("app_id", ASCENDING), ("asked_at", ASCENDING)])])
        await self._db.handoffs.create_indexes(
            [IndexModel([("app_id", ASCENDING), ("requested_at", ASCENDING)])]
        )

    async def mark(self, changes: Iterable[tuple[str, datetime]]) -> None:
        """Mark the (app, day) of each (app id, time of a changed turn) for recomputing."""
        days = sorted({(app_id, at.astimezone(UTC).date()) for app_id, at in changes})
        if not days:
            return
        now = datetime.now(UTC)
        await self._db.analytics_dirty.bulk_write(
            [
                UpdateOne(
                    {"_id": _day_id(app_id, day)},
                    {
                        "$set": {"app_id": app_id, "day": day.isoformat(), "changed_at": now},
                        "$min": {"since": now},
                    },
                    upsert=True,
                )
                for app_id, day in days
            ],
            ordered=False,
        )

    async def recompute(self, app_id: str, day: date) -> datetime:
        """Rebuild one day's rollup from its turns and their ratings; when its read began (a mark
        changed strictly before that, as MongoDB keeps its time, was counted)."""
        began = mongo_now()
        scope = {"app_id": app_id, "occurred_at": _bounds(day)}
        fields = [
            "message_id",
            "session_id",
            "user",
            "outcome",
            "group_id",
            "cited",
            "curated_answer_id",
            "handed_off",
        ]
        turns = await self._db.turns.find(scope, {f: 1 for f in ["occurred_at", *fields]}).to_list()
        rated = self._db.feedback.find(
            {"app_id": app_id, "asked_at": _bounds(day)}, {"message_id": 1, "rating": 1}
        )
        ratings: dict[str, FeedbackRating] = {doc["message_id"]: doc["rating"] async for doc in rated}
        conversations = await self._db.sessions.count_documents(
            {"app_id": app_id, "started_at": _bounds(day)}
        )
        handoffs = await self._db.handoffs.count_documents({"app_id": app_id, "requested_at": _bounds(day)})
        figures, rows = _rows(turns, ratings)
        doc = {
            "app_id": app_id,
            "day": day.isoformat(),
            "computed_at": began,
            "figures": {**figures, "conversations": conversations, "handoffs": handoffs},
            "rows": Binary(_ENCODER.encode(rows)),
        }
        ident = _day_id(app_id, day)
        # Only over a rollup read earlier: a later read saw at least as much (an erasure included).
        with contextlib.suppress(DuplicateKeyError):  # a later one is stored: keep it
            await self._db.analytics_days.replace_one(
                {"_id": ident, "computed_at": {"$lte": began}}, {"_id": ident, **doc}, upsert=True
            )
        return began

    async def recompute_now(self, app_id: str, times: Iterable[datetime]) -> None:
        """Recompute at once the days of these times (after an erasure), clearing their marks."""
        for day in sorted({at.astimezone(UTC).date() for at in times}):
            began = await self.recompute(app_id, day)
            await self._db.analytics_dirty.delete_one(
                {"_id": _day_id(app_id, day), "changed_at": {"$lt": began}}
            )

    async def refresh_due(self) -> int:
        """Recompute every day dirty for at least the refresh delay that no replica holds; how many."""
        now = datetime.now(UTC)
        due = await self._db.analytics_dirty.find(
            {"since": {"$lte": now - timedelta(seconds=self._refresh_s)}}
        ).to_list()
        done = 0
        for mark in due:
            claimed = await self._db.analytics_dirty.find_one_and_update(
                {"_id": mark["_id"], "$or": [{"lease": {"$lt": now}}, {"lease": None}]},
                {"$set": {"lease": now + timedelta(seconds=_LEASE_S)}},
            )
            if claimed is None:  # another replica has it
                continue
            began = await self.recompute(mark["app_id"], date.fromisoformat(mark["day"]))
            gone = await self._db.analytics_dirty.delete_one(
                {"_id": mark["_id"], "changed_at": {"$lt": began}}
            )
            if not gone.deleted_count:  # changed while read: due again at once
                await self._db.analytics_dirty.update_one({"_id": mark["_id"]}, {"$set": {"lease": _EPOCH}})
            done += 1
        return done

    async def refresh_until(self, stop: asyncio.Event) -> None:
        """Recompute dirty days until ``stop``, looking a few times per refresh delay."""
        while not stop.is_set():
            try:
                await self.refresh_due()
            except PyMongoError as exc:
                log.warning("analytics refresh failed, retrying: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.05, self._refresh_s / 4))

    async def days(self, app_id: str, start: date, end: date) -> tuple[list[DayRollup], datetime]:
        """The rollups of the app's days with activity in ``start``..``end``, and the time up to
        which they count everything (the oldest pending change in the range, else now)."""
        now = datetime.now(UTC)
        in_range = {"app_id": app_id, "day": {"$gte": start.isoformat(), "$lte": end.isoformat()}}
        docs = await self._db.analytics_days.find(in_range, {"_id": 0, "computed_at": 0}).to_list()
        pending = await self._db.analytics_dirty.find(in_range, {"since": 1}).to_list()
        as_of = min([now, *(p["since"] for p in pending)])
        rollups = []
        for doc in docs:
            if not doc["figures"]["messages"]:
                continue
            rows = _DECODER.decode(doc["rows"])
            rollups.append(
                DayRollup(
                    day=date.fromisoformat(doc["day"]),
                    figures=msgspec.convert(doc["figures"], AnalyticsFigures),
                    users=rows.users,
                    groups=rows.groups,
                    files=rows.files,
                    curated=rows.curated,
                )
            )
        rollups.sort(key=lambda r: r.day)
        return rollups, as_of


def merge_groups(days: Iterable[DayRollup]) -> dict[str, GroupRow]:
    """Each group's figures over these days (its examples: :func:`newest_examples`)."""
    merged: dict[str, GroupRow] = {}
    for day in days:
        for row in day.groups:
            total = merged.get(row.group_id)
            if total is None:
                merged[row.group_id] = msgspec.structs.replace(row, latest=[], latest_unanswered=[])
                continue
            total.count += row.count
            total.unanswered += row.unanswered
            total.declined += row.declined
            total.rated_down += row.rated_down
            total.handed_off += row.handed_off
            total.last_asked_at = max(total.last_asked_at, row.last_asked_at)
    return merged


def newest_examples(
    days: Iterable[DayRollup], group_ids: Iterable[str], *, unanswered: bool
) -> dict[str, list[Example]]:
    """The newest examples (unanswered ones only, if ``unanswered``) of these groups over these
    days, newest first (only a page's groups: merging every group's would cost more than the rest)."""
    wanted = {g: list[Example]() for g in group_ids}
    for day in days:
        for row in day.groups:
            if row.group_id in wanted:
                wanted[row.group_id] += row.latest_unanswered if unanswered else row.latest
    return {g: _newest(found) for g, found in wanted.items()}
