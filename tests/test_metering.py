"""Metering against real NATS and SecantusDB: exact totals, duplicates and redeliveries counted once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime

import pytest

from obdal.servers import ManagedServer, nats_server
from obdal_common import subjects
from obdal_common.messaging import close, connect, request
from obdal_common.schemas import UsageEvent, UsageQuery, UsageReport, encode
from obdal_metering.main import serve
from obdal_metering.settings import MeteringSettings
from tests.conftest import Servers


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedServer]:
    server = nats_server(tmp_path_factory.mktemp("metering-bus")).start()
    yield server
    server.stop()


@pytest.fixture
async def metering(bus: ManagedServer, servers: Servers) -> AsyncIterator[MeteringSettings]:
    settings = MeteringSettings(nats_url=bus.url, mongo_url=servers.mongo.url, mongo_db="metering_test")
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    nc = await connect(bus.url, name="probe")
    for _ in range(100):  # until metering answers
        try:
            await request(nc, subjects.status_subject("metering"), {}, dict, timeout=1, what="metering")
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
        return await request(nc, subjects.METERING_USAGE, q, UsageReport, timeout=5, what="metering")
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
    status = await request(nc, subjects.status_subject("metering"), {}, dict, timeout=2, what="metering")
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
