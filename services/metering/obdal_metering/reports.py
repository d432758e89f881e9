"""Support analytics over the daily rollups: figures by day, top questions and files, and the
groups of questions that went unanswered.

Counts come from :mod:`obdal_metering.rollups` (one document per day of the range); the words
shown, a group's representative question and its examples, are read from the stored turns at
query time and opened with their sessions' keys, so a group never holds any text and an erased
turn's question is in no answer the moment it is erased. A group's representative is its seed's
question (:mod:`obdal_metering.grouping`); its examples are its newest turns in the range
(for unanswered groups, the newest unanswered ones), with their rating if they have one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import AsyncMongoClient

from obdal_common.cursors import decode_rank_cursor, encode_rank_cursor
from obdal_common.schemas import (
    AnalyticsDay,
    AnalyticsFigures,
    AnalyticsQuery,
    AnalyticsReport,
    CuratedAnswerUse,
    FileCitations,
    QuestionExample,
    QuestionGroup,
    UnansweredPage,
    UnansweredQuery,
)
from obdal_metering.grouping import Groups
from obdal_metering.rollups import TOP_EXAMPLES, DayRollup, GroupRow, Rollups, merge_groups, newest_examples
from obdal_metering.sealing import SessionKeys, unseal

__all__ = ["Reports"]

_SUMMED = [f for f in AnalyticsFigures.__struct_fields__ if f != "users"]


def _totals(days: Sequence[DayRollup]) -> AnalyticsFigures:
    sums = {f: sum(getattr(d.figures, f) for d in days) for f in _SUMMED}
    # Distinct end users over the range: one who came on two days is one user.
    users = len({u for d in days for u in d.users})
    return AnalyticsFigures(**sums, users=users)


def _rank(row: GroupRow) -> tuple[int, datetime, str]:
    return row.unanswered, row.last_asked_at, row.group_id


class Reports:
    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        database: str,
        *,
        keys: SessionKeys,
        groups: Groups,
        rollups: Rollups,
    ) -> None:
        self._db = client[database]
        self._keys = keys
        self._groups = groups
        self._rollups = rollups

    async def _groups_of(
        self,
        app_id: str,
        rows: Sequence[GroupRow],
        days: Sequence[DayRollup],
        *,
        examples: int,
        unanswered: bool,
    ) -> list[QuestionGroup]:
        """The groups of ``rows`` with their representative question and examples, read from the
        turns (by id: one query) and opened with their sessions' keys."""
        if not rows:
            return []
        ids = [row.group_id for row in rows]
        # One more than shown: the newest stands for a group whose seed is gone this instant.
        shown = {
            g: found[: max(examples, 1)]
            for g, found in newest_examples(days, ids, unanswered=unanswered).items()
        }
        seeds = await self._groups.seeds(app_id, ids)
        wanted = {e.message_id for found in shown.values() for e in found} | set(seeds.values())
        turns = {
            t["message_id"]: t
            for t in await self._db.turns.find(
                {"app_id": app_id, "message_id": {"$in": sorted(wanted)}},
                {"message_id": 1, "session_id": 1, "user_message": 1},
            ).to_list()
        }
        keys = await self._keys.many(app_id, {t["session_id"] for t in turns.values()})

        def question(message_id: str) -> str | None:
            turn = turns.get(message_id)
            return None if turn is None else unseal(keys.get(turn["session_id"]), turn["user_message"])

        groups: list[QuestionGroup] = []
        for row in rows:
            opened = [(e, q) for e in shown[row.group_id] if (q := question(e.message_id)) is not None]
            representative = question(seeds.get(row.group_id, ""))
            if representative is None and opened:
                representative = opened[0][1]
            if representative is None:  # every turn of it erased while this was read
                continue
            groups.append(
                QuestionGroup(
                    group_id=row.group_id,
                    count=row.count,
                    unanswered=row.unanswered,
                    declined=row.declined,
                    rated_down=row.rated_down,
                    handed_off=row.handed_off,
                    representative=representative,
                    examples=[
                        QuestionExample(
                            message_id=e.message_id,
                            session_id=turns[e.message_id]["session_id"],
                            question=q,
                            asked_at=e.asked_at,
                            outcome=e.outcome,
                            rating=e.rating,
                        )
                        for e, q in opened[:examples]
                    ],
                    last_asked_at=row.last_asked_at,
                )
            )
        return groups

    async def analytics(self, query: AnalyticsQuery) -> AnalyticsReport:
        """Figures per day and over the range, the most asked question groups, the most cited files
        and how curated answers fared."""
        days, as_of = await self._rollups.days(query.app_id, query.start_date, query.end_date)
        series = [
            AnalyticsDay(date=d.day, **{f: getattr(d.figures, f) for f in AnalyticsFigures.__struct_fields__})
            for d in days
        ]
        merged = sorted(
            merge_groups(days).values(), key=lambda r: (r.count, r.last_asked_at, r.group_id), reverse=True
        )
        top = await self._groups_of(
            query.app_id, merged[: query.top], days, examples=TOP_EXAMPLES, unanswered=False
        )
        citations: Counter[str] = Counter()
        names: dict[str, str] = {}
        served: dict[str, list[int]] = {}
        for day in days:
            for row in day.files:
                citations[row.file_id] += row.citations
                names[row.file_id] = row.filename
            for use in day.curated:
                total = served.setdefault(use.answer_id, [0, 0, 0])
                total[0] += use.served
                total[1] += use.feedback_up
                total[2] += use.feedback_down
        files = sorted(citations.items(), key=lambda item: (-item[1], item[0]))[: query.top]
        curated = sorted(served.items(), key=lambda item: (-item[1][0], item[0]))[: query.top]
        return AnalyticsReport(
            start_date=query.start_date,
            end_date=query.end_date,
            group_by=query.group_by,
            totals=_totals(days),
            series=series,
            top_questions=top,
            top_files=[FileCitations(file_id=f, filename=names[f], citations=n) for f, n in files],
            curated_answers=[
                CuratedAnswerUse(answer_id=a, served=s, feedback_up=up, feedback_down=down)
                for a, (s, up, down) in curated
            ],
            as_of=as_of,
        )

    async def unanswered(self, query: UnansweredQuery) -> UnansweredPage:
        """A page of the question groups with unanswered turns in the range, most unanswered first
        (then most recently asked); ``next_cursor`` when more follow."""
        days, as_of = await self._rollups.days(query.app_id, query.start_date, query.end_date)
        ranked = sorted((r for r in merge_groups(days).values() if r.unanswered), key=_rank, reverse=True)
        if query.cursor is not None:
            after = decode_rank_cursor(query.cursor)
            ranked = [r for r in ranked if _rank(r) < after]
        page = ranked[: query.limit]
        more = len(ranked) > len(page)
        groups = await self._groups_of(query.app_id, page, days, examples=query.examples, unanswered=True)
        last = page[-1] if more else None
        return UnansweredPage(
            start_date=query.start_date,
            end_date=query.end_date,
            groups=groups,
            next_cursor=encode_rank_cursor(*_rank(last)) if last is not None else None,
            as_of=as_of,
        )
