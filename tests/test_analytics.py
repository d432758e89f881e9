"""Support analytics and unanswered-question groups, through the public API of the running stack,
and metering alone for grouping and retention (the collections looked at directly)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest
from pymongo import AsyncMongoClient

from obdal.servers import ManagedServer
from obdal_common.contract import Metering
from obdal_common.schemas import (
    AnalyticsQuery,
    AnalyticsReport,
    FeedbackSet,
    RetentionPolicy,
    TurnEvent,
    UnansweredPage,
    UnansweredQuery,
)
from obdal_metering.grouping import decode_vector, group_vectors
from obdal_metering.settings import MeteringSettings
from tests.api import Api, poll
from tests.conftest import Servers
from tests.test_end_to_end import POLICY
from tests.test_metering import ask, bus, metering, publish_turns, turn_event

__all__ = ["bus", "metering"]  # module fixtures of tests.test_metering, used here too

ORIGIN = {"Origin": "https://help.analytics.example.com"}
GIFT_WRAP = [
    ("carol", "Do you offer gift wrapping?"),
    ("alice", "Can you gift wrap my order?"),
    ("bob", "is gift wrapping available for presents"),
    ("alice", "Could my parcel be gift-wrapped?"),
]
PARIS = [
    ("bob", "Do you have a shop in Paris?"),
    ("carol", "Is there a physical store in Paris I can visit?"),
]
TIMEOUT_S = 30.0


def get(api: Api, key: str, path: str, **params: Any) -> httpx.Response:
    return api.http.get(path, headers=api.auth(key), params=params)


def body(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def ask_chat(api: Api, key: str, message: str, user: str) -> dict[str, Any]:
    return body(api.chat(key, message, user=user))


def by_representative(page: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["representative"]: g for g in page["groups"]}


def test_unanswered_questions_are_grouped_counted_and_erased_with_their_end_user(
    api: Api, mongo: Any
) -> None:
    app_id, key = api.new_tenant("analytics")
    file_id = api.index(key, "policy.md", POLICY)
    asked: dict[str, dict[str, Any]] = {}
    for user, question in [*GIFT_WRAP, *PARIS]:
        asked[question] = ask_chat(api, key, question, user)
    refund = ask_chat(api, key, "How long is the refund window?", "alice")
    courier = ask_chat(api, key, "Which courier do you ship with?", "bob")
    ask_chat(api, key, "hello", "alice")
    assert all(not a["sources"] for a in asked.values()), "the unanswerable questions were answered"
    assert refund["sources"]
    assert courier["sources"]
    rated = api.http.post(
        f"/v1/messages/{courier['message_id']}/feedback", headers=api.auth(key), json={"rating": "down"}
    )
    assert rated.status_code == 200, rated.text

    def unanswered(**params: Any) -> dict[str, Any]:
        return body(get(api, key, "/v1/analytics/unanswered", **params))

    page = poll(unanswered, lambda p: sum(g["unanswered"] for g in p["groups"]) == 7)
    assert page["next_cursor"] is None
    assert page["as_of"].endswith("Z")
    assert [g["unanswered"] for g in page["groups"]] == [4, 2, 1]
    gift, paris, rated_down = page["groups"]
    # The paraphrases are one group, represented by its first question; examples newest first.
    assert gift["representative"] == GIFT_WRAP[0][1]
    assert (gift["count"], gift["declined"], gift["rated_down"], gift["handed_off"]) == (4, 4, 0, 0)
    assert [e["question"] for e in gift["examples"]] == [q for _, q in GIFT_WRAP[::-1][:3]]
    assert all(e["outcome"] == "declined" and e["rating"] is None for e in gift["examples"])
    last = api.wait_session(key, asked[GIFT_WRAP[-1][1]]["session_id"], messages=2)["messages"][0]
    assert datetime.fromisoformat(gift["last_asked_at"]) == datetime.fromisoformat(last["timestamp"])
    assert paris["representative"] == PARIS[0][1]
    assert paris["count"] == 2
    assert rated_down["representative"] == "Which courier do you ship with?"
    assert (rated_down["declined"], rated_down["rated_down"]) == (0, 1)
    assert rated_down["examples"][0]["rating"] == "down"
    assert [len(g["examples"]) for g in unanswered(examples=1)["groups"]] == [1, 1, 1]
    assert [g["examples"] for g in unanswered(examples=0)["groups"]] == [[], [], []]

    # Paging visits every group once.
    seen: list[str] = []
    cursor: dict[str, str] = {}
    while True:
        one = unanswered(limit=1, **cursor)
        seen += [g["group_id"] for g in one["groups"]]
        if one["next_cursor"] is None:
            break
        cursor = {"cursor": one["next_cursor"]}
    assert seen == [g["group_id"] for g in page["groups"]]

    report = body(get(api, key, "/v1/analytics"))
    totals = report["totals"]
    assert totals == {
        "conversations": 9,
        "messages": 9,
        "users": 3,
        "answered": 2,
        "declined": 6,
        "curated": 0,
        "smalltalk": 1,
        "handed_off": 0,
        "feedback_up": 0,
        "feedback_down": 1,
        "handoffs": 0,
    }
    [today] = report["series"]
    assert today == {**totals, "date": datetime.now(UTC).date().isoformat()}
    top = report["top_questions"]
    assert [(g["representative"], g["count"]) for g in top[:2]] == [(GIFT_WRAP[0][1], 4), (PARIS[0][1], 2)]
    assert "hello" not in {g["representative"] for g in top}  # small talk is in no group
    assert report["top_files"] == [
        {
            "file_id": file_id,
            "filename": "policy.md",
            "citations": len(refund["sources"]) + len(courier["sources"]),
        }
    ]
    assert report["curated_answers"] == []
    assert len(body(get(api, key, "/v1/analytics", top=1))["top_questions"]) == 1

    # Erasing an end user takes their questions out of every group, example and figure at once.
    carol = {asked[q]["message_id"] for u, q in [*GIFT_WRAP, *PARIS] if u == "carol"}
    assert api.http.delete("/v1/users/carol", headers=api.auth(key)).status_code == 200
    after = unanswered(examples=20)
    groups = by_representative(after)
    assert set(groups) == {GIFT_WRAP[1][1], PARIS[0][1], "Which courier do you ship with?"}  # re-seeded
    assert (groups[GIFT_WRAP[1][1]]["count"], groups[PARIS[0][1]]["count"]) == (3, 1)
    shown = {e["message_id"] for g in after["groups"] for e in g["examples"]}
    assert shown
    assert not shown & carol
    assert {e["question"] for g in after["groups"] for e in g["examples"]}.isdisjoint(
        {GIFT_WRAP[0][1], PARIS[1][1]}
    )
    totals = body(get(api, key, "/v1/analytics"))["totals"]
    assert (totals["users"], totals["messages"], totals["conversations"], totals["declined"]) == (2, 7, 7, 4)
    for doc in mongo.analytics_days.find({"app_id": app_id}):
        assert b"carol" not in bytes(doc["rows"])
        assert "carol" not in repr(doc)
    for doc in mongo.question_groups.find({"app_id": app_id}):
        assert doc["seed"] not in carol
    assert mongo.turns.count_documents({"app_id": app_id, "message_id": {"$in": sorted(carol)}}) == 0


def test_analytics_of_another_app_are_invisible(api: Api) -> None:
    _, key = api.new_tenant("analytics-mine")
    _, stranger = api.new_tenant("analytics-stranger")
    answer = ask_chat(api, key, "Do you sell gift cards?", "dave")
    api.wait_session(key, answer["session_id"], messages=2)
    poll(lambda: body(get(api, key, "/v1/analytics")), lambda r: r["totals"]["messages"] == 1)
    theirs = body(get(api, stranger, "/v1/analytics"))
    assert theirs["totals"]["messages"] == 0
    assert theirs["series"] == []
    assert theirs["top_questions"] == []
    assert body(get(api, stranger, "/v1/analytics/unanswered"))["groups"] == []


def test_analytics_need_a_secret_key_with_the_sessions_read_scope(api: Api) -> None:
    app_id, _ = api.new_tenant("analytics-keys")
    widget = api.create_key(app_id, kind="publishable", allowed_origins=[ORIGIN["Origin"]])["key"]
    usage_only = api.create_key(app_id, scopes=["usage:read"])["key"]
    for path in ("/v1/analytics", "/v1/analytics/unanswered"):
        for key, headers in ((widget, ORIGIN), (usage_only, {})):
            response = api.http.get(path, headers={**api.auth(key), **headers})
            assert (response.status_code, response.json()["error"]["code"]) == (403, "insufficient_scope")


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/v1/analytics", {"start_date": "2024-13-01"}, "invalid_date"),
        ("/v1/analytics", {"start_date": "2024-02-01", "end_date": "2024-01-01"}, "invalid_date_range"),
        ("/v1/analytics", {"end_date": "9999-12-31"}, "invalid_date"),
        ("/v1/analytics", {"group_by": "week"}, "invalid_group_by"),
        ("/v1/analytics", {"top": 0}, "invalid_top"),
        ("/v1/analytics", {"top": 51}, "invalid_top"),
        ("/v1/analytics/unanswered", {"start_date": "yesterday"}, "invalid_date"),
        (
            "/v1/analytics/unanswered",
            {"start_date": "2024-02-01", "end_date": "2024-01-01"},
            "invalid_date_range",
        ),
        ("/v1/analytics/unanswered", {"limit": 0}, "invalid_limit"),
        ("/v1/analytics/unanswered", {"limit": 101}, "invalid_limit"),
        ("/v1/analytics/unanswered", {"examples": 21}, "invalid_examples"),
        ("/v1/analytics/unanswered", {"cursor": "nope"}, "invalid_cursor"),
    ],
)
def test_bad_analytics_queries_are_400(api: Api, path: str, params: dict[str, Any], code: str) -> None:
    _, key = api.new_tenant("analytics-bad")
    response = get(api, key, path, **params)
    assert (response.status_code, response.json()["error"]["code"]) == (400, code), response.text


def test_the_routes_are_documented(api: Api) -> None:
    paths = api.http.get("/docs/openapi.json").json()["paths"]
    for path, names in (
        ("/v1/analytics", {"start_date", "end_date", "group_by", "top"}),
        ("/v1/analytics/unanswered", {"start_date", "end_date", "limit", "cursor", "examples"}),
    ):
        assert names <= {p["name"] for p in paths[path]["get"]["parameters"]}


# --- metering alone: grouping as the bench computes it, and retention ---------------------


def _vectors(intents: int, per_intent: int, *, seed: int = 7) -> tuple[np.ndarray[Any, Any], list[int]]:
    """Unit vectors around ``intents`` random directions (noise well inside the threshold)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(intents, 384))
    rows, labels = [], []
    for n in range(intents * per_intent):
        label = n % intents
        row = centres[label] / np.linalg.norm(centres[label]) + rng.normal(scale=0.02, size=384)
        rows.append(row / np.linalg.norm(row))
        labels.append(label)
    return np.array(rows, dtype=np.float32), labels


def _event(n: int, *, app_id: str, vector: np.ndarray[Any, Any], at: datetime, outcome: str) -> TurnEvent:
    base = turn_event(
        f"evt_an{app_id}{n}", app_id=app_id, session_id=f"sess_{app_id}{n}", at=at, user=f"enduser{n}x"
    )
    return msgspec.structs.replace(
        base, question_vector=vector.astype("<f2").tobytes(), embedder="test/384", outcome=outcome
    )


def test_a_vector_that_cannot_be_compared_joins_no_group() -> None:
    unit = np.array([0.6, 0.8], dtype="<f2")
    decoded = decode_vector(unit.tobytes())
    assert decoded is not None
    assert np.allclose(decoded, [0.6, 0.8], atol=1e-3)
    for raw in (
        b"",
        b"\x00",
        np.zeros(4, dtype="<f2").tobytes(),
        np.array([np.nan, 1], dtype="<f2").tobytes(),
    ):
        assert decode_vector(raw) is None
    # Leader clustering: the seed decides, not the latest member.
    assert group_vectors(np.array([[1, 0], [0.8, 0.6], [0.28, 0.96], [0, 1]]), threshold=0.75) == [0, 0, 1, 1]


async def _wait(
    url: str, query: AnalyticsQuery | UnansweredQuery, done: Callable[[Any], bool]
) -> AnalyticsReport | UnansweredPage:
    rpc = Metering.analytics if isinstance(query, AnalyticsQuery) else Metering.unanswered
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        result = await ask(url, rpc, query)  # type: ignore[arg-type]
        if done(result):
            return result  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, result
        await asyncio.sleep(0.1)


async def test_the_store_groups_exactly_as_group_vectors_does(
    bus: ManagedServer, metering: MeteringSettings, servers: Servers
) -> None:
    app_id = "app_grouping"
    vectors, labels = _vectors(5, 4)
    now = datetime.now(UTC)
    events = [_event(n, app_id=app_id, vector=v, at=now, outcome="declined") for n, v in enumerate(vectors)]
    await publish_turns(bus.url, events)
    today = now.date()
    query = UnansweredQuery(app_id=app_id, start_date=today, end_date=today, examples=0)
    page = await _wait(bus.url, query, lambda p: sum(g.count for g in p.groups) == len(events))
    assert isinstance(page, UnansweredPage)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongo.url)
    try:
        turns = await client[metering.mongo_db].turns.find({"app_id": app_id}).to_list()
    finally:
        await client.close()
    stored = {t["message_id"]: t["group_id"] for t in turns}
    grouped = [stored[e.message_id] for e in events]
    expected = group_vectors(vectors)
    # The same partition: same members together, whatever the ids.
    assert [grouped.index(g) for g in grouped] == [expected.index(g) for g in expected]
    assert len(set(expected)) == 5 == len(page.groups)
    assert expected == labels
    assert sorted(g.count for g in page.groups) == [4] * 5


async def test_retention_takes_old_questions_out_of_groups_and_figures(
    bus: ManagedServer, metering: MeteringSettings, servers: Servers
) -> None:
    app_id = "app_analytics_retention"
    vectors, _ = _vectors(1, 3, seed=11)
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=3), now - timedelta(hours=1)
    events = [
        _event(0, app_id=app_id, vector=vectors[0], at=old, outcome="declined"),  # the seed
        _event(1, app_id=app_id, vector=vectors[1], at=recent, outcome="declined"),
        _event(2, app_id=app_id, vector=vectors[2], at=recent, outcome="answered"),
    ]
    await publish_turns(bus.url, events)
    start, end = (now - timedelta(days=5)).date(), now.date()
    query = AnalyticsQuery(app_id=app_id, start_date=start, end_date=end)
    report = await _wait(bus.url, query, lambda r: r.totals.messages == 3)
    await ask(
        bus.url,
        Metering.feedback,
        FeedbackSet(app_id=app_id, message_id=events[2].message_id, rating="down", wait_s=3),
    )
    unanswered = UnansweredQuery(app_id=app_id, start_date=start, end_date=end)
    page = await _wait(bus.url, unanswered, lambda p: bool(p.groups) and p.groups[0].unanswered == 3)
    assert isinstance(page, UnansweredPage)
    assert page.groups[0].representative == events[0].user_message

    await ask(bus.url, Metering.set_retention, RetentionPolicy(app_id=app_id, session_ttl_days=1))
    report = await _wait(bus.url, query, lambda r: r.totals.messages == 2)
    assert isinstance(report, AnalyticsReport)
    assert [d.date for d in report.series] == [recent.date()]
    assert (report.totals.users, report.totals.declined, report.totals.feedback_down) == (2, 1, 1)
    page = await _wait(bus.url, unanswered, lambda p: bool(p.groups) and p.groups[0].count == 2)
    assert isinstance(page, UnansweredPage)
    [group] = page.groups
    assert group.representative == events[1].user_message  # re-seeded from the oldest left
    assert events[0].message_id not in {e.message_id for e in group.examples}
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongo.url)
    try:
        db = client[metering.mongo_db]
        days = await db.analytics_days.find({"app_id": app_id}).to_list()
        assert days
        assert all(b"enduser0x" not in bytes(d["rows"]) for d in days)
        [stored] = await db.question_groups.find({"app_id": app_id}).to_list()
        assert stored["seed"] == events[1].message_id
    finally:
        await client.close()
    assert date.fromisoformat(str(report.series[0].date)) == recent.date()
