"""Metering against real NATS and SecantusDB: exact totals, duplicates and redeliveries counted once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
from pymongo import AsyncMongoClient

from obdal.servers import ManagedServer, nats_server
from obdal_common import subjects
from obdal_common.contract import Metering, NatsBus, Rpc
from obdal_common.errors import NotFound
from obdal_common.messaging import close, connect
from obdal_common.schemas import (
    EraseRequest,
    EraseResult,
    FeedbackQuery,
    FeedbackSet,
    RetentionPolicy,
    SessionDetail,
    SessionLookup,
    SessionPage,
    SessionQuery,
    Source,
    StatusQuery,
    TurnEvent,
    Usage,
    UsageEvent,
    UsageQuery,
    UsageReport,
    encode,
)
from obdal_metering.main import serve
from obdal_metering.sealing import SessionKeys, unseal
from obdal_metering.sessions import SessionStore
from obdal_metering.settings import MeteringSettings
from tests.conftest import Servers

Req = TypeVar("Req")
Rep = TypeVar("Rep")


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedServer]:
    server = nats_server(tmp_path_factory.mktemp("metering-bus")).start()
    yield server
    server.stop()


@pytest.fixture
async def metering(bus: ManagedServer, servers: Servers) -> AsyncIterator[MeteringSettings]:
    settings = MeteringSettings(
        nats_url=bus.url,
        mongo_url=servers.mongo.url,
        mongo_db="metering_test",
        metering_retention_sweep_s=0.2,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    nc = await connect(bus.url, name="probe")
    for _ in range(100):  # until metering answers
        try:
            await Metering.status.call(NatsBus(nc), StatusQuery(), timeout=1)
            break
        except Exception:
            await asyncio.sleep(0.1)
    await close(nc)
    yield settings
    stop.set()
    await asyncio.wait_for(task, 30)


def usage_event(
    event_id: str, *, app_id: str, tokens: int, model: str = "m1", key_id: str = "key_a"
) -> UsageEvent:
    return UsageEvent(
        event_id=event_id,
        app_id=app_id,
        key_id=key_id,
        session_id="sess_x",
        message_id=f"msg_{event_id}",
        model=model,
        prompt_tokens=tokens,
        completion_tokens=1,
        total_tokens=tokens + 1,
        cost=0.001,
        occurred_at=datetime.now(UTC),
    )


async def query(url: str, app_id: str, group_by: str = "day") -> UsageReport:
    nc = await connect(url, name="query")
    try:
        today = date.today()
        q = UsageQuery(app_id=app_id, start_date=today, end_date=today, group_by=group_by)  # type: ignore[arg-type]
        return await Metering(NatsBus(nc)).usage(q)
    finally:
        await close(nc)


async def wait_total(url: str, app_id: str, requests: int) -> UsageReport:
    report = await query(url, app_id)
    for _ in range(100):
        if report.total_requests >= requests:
            break
        await asyncio.sleep(0.1)
        report = await query(url, app_id)
    return report


async def test_duplicates_and_redeliveries_count_once(bus: ManagedServer, metering: MeteringSettings) -> None:
    nc = await connect(bus.url, name="publisher")
    js = nc.jetstream()
    app_id = "app_dupes"
    for n in range(10):
        event = usage_event(f"evt_d{n}", app_id=app_id, tokens=10, model="m1" if n % 2 else "m2")
        # Published twice with the same Nats-Msg-Id: JetStream drops the second.
        for _ in range(2):
            await js.publish(subjects.USAGE_EVENT, encode(event), headers={"Nats-Msg-Id": event.event_id})
        # And again past deduplication (a new message id): the unique event id drops it.
        await js.publish(
            subjects.USAGE_EVENT, encode(event), headers={"Nats-Msg-Id": f"{event.event_id}-again"}
        )
    await close(nc)

    report = await wait_total(bus.url, app_id, 10)
    await asyncio.sleep(0.5)  # anything still in flight would now show up as double counting
    report = await query(bus.url, app_id)
    assert report.total_requests == 10
    assert report.prompt_tokens == 100
    assert report.total_tokens == 110
    assert report.total_cost == pytest.approx(0.01)
    by_model = {b.group: b.requests for b in (await query(bus.url, app_id, "model")).breakdown}
    assert by_model == {"m1": 5, "m2": 5}


async def test_undecodable_events_are_dead_lettered(bus: ManagedServer, metering: MeteringSettings) -> None:
    nc = await connect(bus.url, name="publisher")
    js = nc.jetstream()
    await js.publish(subjects.USAGE_EVENT, b'{"not": "an event"}', headers={"Nats-Msg-Id": "junk-1"})
    good = usage_event("evt_after_junk", app_id="app_junk", tokens=3)
    await js.publish(subjects.USAGE_EVENT, encode(good), headers={"Nats-Msg-Id": good.event_id})
    report = await wait_total(bus.url, "app_junk", 1)
    assert report.total_requests == 1  # the poison message did not block the good one
    info = await js.stream_info(subjects.DEADLETTER_STREAM)
    assert info.state.messages >= 1
    status = await Metering(NatsBus(nc)).status(StatusQuery())
    assert "1 dead-lettered" in str(status)
    await close(nc)


async def test_usage_of_other_apps_is_not_counted(bus: ManagedServer, metering: MeteringSettings) -> None:
    nc = await connect(bus.url, name="publisher")
    js = nc.jetstream()
    for app_id, count in (("app_one", 3), ("app_two", 5)):
        for n in range(count):
            event = usage_event(f"evt_{app_id}_{n}", app_id=app_id, tokens=1)
            await js.publish(subjects.USAGE_EVENT, encode(event), headers={"Nats-Msg-Id": event.event_id})
    await close(nc)
    assert (await wait_total(bus.url, "app_two", 5)).total_requests == 5
    assert (await wait_total(bus.url, "app_one", 3)).total_requests == 3


def turn_event(
    event_id: str, *, app_id: str, session_id: str, at: datetime, user: str | None = None
) -> TurnEvent:
    return TurnEvent(
        event_id=event_id,
        app_id=app_id,
        key_id="key_a",
        session_id=session_id,
        message_id=f"msg_{event_id}",
        user_message=f"question {event_id}",
        answer=f"answer {event_id}",
        sources=[Source(file_id="file_a", filename="a.md", snippet="text", score=0.5)],
        usage=Usage(prompt_tokens=7, completion_tokens=3, total_tokens=10, cost=0.0),
        occurred_at=at,
        user=user,
    )


async def ask(url: str, rpc: Rpc[Req, Rep], payload: Req) -> Rep:
    nc = await connect(url, name="query")
    try:
        return await rpc.call(NatsBus(nc), payload)
    finally:
        await close(nc)


async def publish_turns(url: str, events: list[TurnEvent], *, msg_id_suffix: str = "") -> None:
    nc = await connect(url, name="publisher")
    js = nc.jetstream()
    for event in events:
        headers = {"Nats-Msg-Id": event.event_id + msg_id_suffix}
        await js.publish(subjects.TURN_EVENT, encode(event), headers=headers)
    await close(nc)


async def lookup(url: str, app_id: str, session_id: str) -> SessionDetail:
    detail: SessionDetail = await ask(
        url, Metering.session, SessionLookup(app_id=app_id, session_id=session_id)
    )
    return detail


async def wait_session(url: str, app_id: str, session_id: str, messages: int) -> SessionDetail | None:
    """The session once it has ``messages`` messages (None while it does not exist)."""
    detail: SessionDetail | None = None
    for _ in range(100):
        try:
            detail = await lookup(url, app_id, session_id)
        except NotFound:
            detail = None
        if detail is not None and len(detail.messages) >= messages:
            break
        await asyncio.sleep(0.1)
    return detail


async def test_duplicated_turns_count_once_in_the_session(
    bus: ManagedServer, metering: MeteringSettings
) -> None:
    app_id = "app_turns"
    now = datetime.now(UTC)
    events = [
        turn_event(f"evt_t{n}", app_id=app_id, session_id="sess_a", at=now + timedelta(seconds=n))
        for n in range(3)
    ]
    await publish_turns(bus.url, events)
    await publish_turns(bus.url, events, msg_id_suffix="-redelivered")  # past JetStream's dedupe

    detail = await wait_session(bus.url, app_id, "sess_a", 6)
    await asyncio.sleep(0.5)  # the duplicates have now been consumed too
    page = await ask(bus.url, Metering.sessions, SessionQuery(app_id=app_id))
    assert [(s.session_id, s.message_count, s.total_tokens) for s in page.data] == [("sess_a", 6, 30)]
    assert page.data[0].preview == "question evt_t0"
    detail = await wait_session(bus.url, app_id, "sess_a", 6)
    assert detail is not None
    assert [m.role for m in detail.messages] == ["user", "assistant"] * 3
    assert [m.content for m in detail.messages[:2]] == ["question evt_t0", "answer evt_t0"]
    assert detail.messages[1].usage == events[0].usage
    assert detail.messages[1].sources == events[0].sources


async def test_erased_session_drops_late_turns_and_starts_fresh(
    bus: ManagedServer, metering: MeteringSettings
) -> None:
    app_id = "app_erase"
    before = datetime.now(UTC) - timedelta(seconds=5)
    await publish_turns(bus.url, [turn_event("evt_e0", app_id=app_id, session_id="sess_e", at=before)])
    assert await wait_session(bus.url, app_id, "sess_e", 2) is not None

    result = await ask(bus.url, Metering.erase, EraseRequest(app_id=app_id, session_id="sess_e"))
    assert result == EraseResult(session_ids=["sess_e"], messages_erased=2)
    # A turn from before the erasure arriving late (it was in flight) is dropped ...
    late = turn_event("evt_e1", app_id=app_id, session_id="sess_e", at=before + timedelta(seconds=1))
    # ... and one after it (the same session id used again) starts the session afresh.
    fresh = turn_event(
        "evt_e2", app_id=app_id, session_id="sess_e", at=datetime.now(UTC) + timedelta(seconds=1)
    )
    await publish_turns(bus.url, [late, fresh])
    detail = await wait_session(bus.url, app_id, "sess_e", 2)
    await asyncio.sleep(0.3)
    detail = await wait_session(bus.url, app_id, "sess_e", 2)
    assert detail is not None
    assert [m.content for m in detail.messages] == ["question evt_e2", "answer evt_e2"]


def on_disk(directory: Path, data: bytes) -> bool:
    return any(data in f.read_bytes() for f in directory.rglob("*") if f.is_file())


async def test_stored_content_is_sealed_and_unreadable_once_its_session_is_erased(
    bus: ManagedServer, servers: Servers, metering: MeteringSettings
) -> None:
    app_id, session_id = "app_sealed", "sess_sealed"
    await publish_turns(
        bus.url, [turn_event("evt_s0", app_id=app_id, session_id=session_id, at=datetime.now(UTC))]
    )
    detail = await wait_session(bus.url, app_id, session_id, 2)
    assert detail is not None
    assert [m.content for m in detail.messages] == ["question evt_s0", "answer evt_s0"]  # opened on reading
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongo.url, tz_aware=True)
    nc = await connect(bus.url, name="test")
    try:
        # What MongoDB's journal, oplog or a backup would keep: the stored documents.
        copy = await client[metering.mongo_db].turns.find_one({"app_id": app_id, "session_id": session_id})
        summary = await client[metering.mongo_db].sessions.find_one(
            {"app_id": app_id, "session_id": session_id}
        )
        assert copy is not None
        assert summary is not None
        stored = [copy["user_message"], copy["answer"], copy["sources"], summary["preview"]]
        assert not any("evt_s0" in value for value in stored), stored
        keys = SessionKeys(nc.jetstream())
        key = await keys.get(app_id, session_id)
        assert key is not None
        assert unseal(key, copy["answer"]) == "answer evt_s0"

        store_dir = Path(bus.command[list(bus.command).index("-sd") + 1])
        assert on_disk(store_dir, key)

        await ask(bus.url, Metering.erase, EraseRequest(app_id=app_id, session_id=session_id))
        assert await keys.get(app_id, session_id) is None
        assert unseal(None, copy["answer"]) is None
        # The key left the disk too (erased, not only deleted), so no copy can be opened any more.
        assert not on_disk(store_dir, key)
    finally:
        await close(nc)
        await client.close()


async def test_retention_erases_old_session_content(bus: ManagedServer, metering: MeteringSettings) -> None:
    app_id = "app_retention"
    now = datetime.now(UTC)
    old = [turn_event("evt_r0", app_id=app_id, session_id="sess_old", at=now - timedelta(days=3))]
    mixed = [
        turn_event("evt_r1", app_id=app_id, session_id="sess_mixed", at=now - timedelta(days=2)),
        turn_event("evt_r2", app_id=app_id, session_id="sess_mixed", at=now),
    ]
    await publish_turns(bus.url, old + mixed)
    assert await wait_session(bus.url, app_id, "sess_mixed", 4) is not None
    for turn in old + mixed:
        rating = FeedbackSet(app_id=app_id, message_id=turn.message_id, rating="down", wait_s=3)
        await ask(bus.url, Metering.feedback, rating)

    policy = RetentionPolicy(app_id=app_id, session_ttl_days=1)
    assert await ask(bus.url, Metering.set_retention, policy) == policy
    page = SessionPage(data=[])
    for _ in range(50):
        page = await ask(bus.url, Metering.sessions, SessionQuery(app_id=app_id))
        if [s.session_id for s in page.data] == ["sess_mixed"] and page.data[0].message_count == 2:
            break
        await asyncio.sleep(0.1)
    assert [(s.session_id, s.message_count) for s in page.data] == [("sess_mixed", 2)]
    with pytest.raises(NotFound):
        await lookup(bus.url, app_id, "sess_old")
    # A session whose turns are all past the policy loses its key; one still in use keeps it.
    nc = await connect(bus.url, name="test")
    try:
        keys = SessionKeys(nc.jetstream())
        for _ in range(50):
            if await keys.get(app_id, "sess_old") is None:
                break
            await asyncio.sleep(0.1)
        assert await keys.get(app_id, "sess_old") is None
        assert await keys.get(app_id, "sess_mixed") is not None
    finally:
        await close(nc)
    # Ratings of the erased turns go with them.
    rated = await ask(bus.url, Metering.feedback_list, FeedbackQuery(app_id=app_id))
    assert [item.message_id for item in rated.feedback] == [mixed[1].message_id]


async def test_a_summary_that_counted_more_turns_is_not_overwritten(
    bus: ManagedServer, servers: Servers, metering: MeteringSettings
) -> None:
    app_id, session_id = "app_race", "sess_race"
    now = datetime.now(UTC)
    await publish_turns(bus.url, [turn_event("evt_race0", app_id=app_id, session_id=session_id, at=now)])
    assert await wait_session(bus.url, app_id, session_id, 2) is not None
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongo.url, tz_aware=True)
    try:
        summaries = client[metering.mongo_db].sessions
        key = {"app_id": app_id, "session_id": session_id}
        # As written by another replica that had already seen a second turn.
        await summaries.update_one(key, {"$set": {"message_count": 4}})
        nc = await connect(bus.url, name="test")
        store = SessionStore(client, metering.mongo_db, keys=SessionKeys(nc.jetstream()))
        await store.refresh([(app_id, session_id)])  # a replica that saw one turn only
        assert (await summaries.find_one(key) or {})["message_count"] == 4
        await store.refresh([(app_id, session_id)], shrinking=True)  # after retention deleted turns
        assert (await summaries.find_one(key) or {})["message_count"] == 2
        await client[metering.mongo_db].turns.delete_many(key)
        await store.refresh([(app_id, session_id)])
        assert await summaries.find_one(key) is None
        await close(nc)
    finally:
        await client.close()


async def test_events_whose_numbers_disagree_are_dead_lettered_not_counted(
    bus: ManagedServer, metering: MeteringSettings
) -> None:
    app_id = "app_inconsistent"
    bad_total = msgspec.structs.replace(
        usage_event("evt_bad_total", app_id=app_id, tokens=5), total_tokens=99
    )
    negative = turn_event("evt_negative", app_id=app_id, session_id="sess_n", at=datetime.now(UTC))
    negative = msgspec.structs.replace(
        negative, usage=Usage(prompt_tokens=-5, completion_tokens=1, total_tokens=-4, cost=0.0)
    )
    good = usage_event("evt_good", app_id=app_id, tokens=5)
    nc = await connect(bus.url, name="publisher")
    js = nc.jetstream()
    for subject, event in ((subjects.USAGE_EVENT, bad_total), (subjects.TURN_EVENT, negative)):
        await js.publish(subject, encode(event), headers={"Nats-Msg-Id": event.event_id})
    await js.publish(subjects.USAGE_EVENT, encode(good), headers={"Nats-Msg-Id": good.event_id})

    report = await wait_total(bus.url, app_id, 1)
    await asyncio.sleep(0.3)
    report = await query(bus.url, app_id)
    assert (report.total_requests, report.total_tokens) == (1, 6)
    last = await js.get_last_msg(subjects.DEADLETTER_STREAM, subjects.deadletter_subject("metering"))
    assert last.headers is not None
    assert "evt_negative: negative tokens or cost" in last.headers["Obdal-Reason"]
    status = await Metering(NatsBus(nc)).status(StatusQuery())
    assert "2 dead-lettered" in str(status)
    with pytest.raises(NotFound):
        await lookup(bus.url, app_id, "sess_n")
    await close(nc)
