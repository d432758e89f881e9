"""The typed contract: declarations, typed clients and bindings, over the in-memory bus.

The same encoding, error replies and handler code run here as over NATS (the real-server
suites exercise NATS itself); these pin what a caller can rely on from any RPC.
"""

from __future__ import annotations

import asyncio
from datetime import date

import msgspec
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.kv import KeyValue
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from obdal_chat.bindings import chat_bindings
from obdal_chat.history import SessionHistory
from obdal_common.contract import Bindings, Chat, Contract, Ingest, MemoryBus, Metering, Rpc
from obdal_common.contract.rpc import ERROR_HEADER
from obdal_common.errors import DependencyUnavailable, NotFound, ObdalError
from obdal_common.schemas import (
    AgentMessageCreate,
    AnalyticsQuery,
    ErrorReply,
    HandoffRequest,
    HandoffResolve,
    HistoryErase,
    RetentionPolicy,
    RetentionQuery,
    SessionEventsQuery,
    StatusQuery,
    UnansweredQuery,
    UsageQuery,
    decode,
)
from obdal_metering.bindings import metering_bindings
from obdal_metering.erasure import Eraser
from obdal_metering.feedback import FeedbackStore
from obdal_metering.grouping import Groups
from obdal_metering.handoffs import Handoffs
from obdal_metering.reports import Reports
from obdal_metering.rollups import Rollups
from obdal_metering.sealing import SessionKeys
from obdal_metering.sessions import SessionStore
from obdal_metering.store import MeteringStore


class Echo(msgspec.Struct, frozen=True, kw_only=True):
    text: str


class Toy(Contract):
    service = "toy"
    echo = Rpc("obdal.toy.echo", Echo, Echo, timeout=1.0, errors=(NotFound,))
    slow = Rpc("obdal.toy.slow", Echo, Echo, timeout=0.2)


async def echo(req: Echo) -> Echo:
    if req.text == "missing":
        raise NotFound("no such thing", code="thing_not_found")
    if req.text == "bug":
        raise RuntimeError("a bug")
    return Echo(text=req.text.upper())


async def slow(req: Echo) -> Echo:
    await asyncio.sleep(5)
    return req


async def served() -> tuple[MemoryBus, Bindings]:
    bus = MemoryBus()
    bindings = Bindings(Toy).bind(Toy.echo, echo).bind(Toy.slow, slow)
    await bindings.serve(bus)
    return bus, bindings


async def test_a_call_is_typed_and_errors_come_back_as_their_own_class() -> None:
    bus, bindings = await served()
    toy = Toy(bus)
    assert await toy.echo(Echo(text="hi")) == Echo(text="HI")
    with pytest.raises(NotFound) as missing:
        await toy.echo(Echo(text="missing"))
    assert (missing.value.code, missing.value.status) == ("thing_not_found", 404)
    with pytest.raises(ObdalError) as bug:
        await toy.echo(Echo(text="bug"))
    assert (bug.value.code, bug.value.status) == ("internal_error", 500)
    await bindings.stop()


async def test_a_malformed_request_is_a_400_not_a_500() -> None:
    bus, bindings = await served()
    data, headers = await bus.request(Toy.echo.subject, b'{"text": 3}', headers={}, timeout=1, service="toy")
    assert headers.get(ERROR_HEADER)
    reply = decode(data, ErrorReply)
    assert (reply.status, reply.code) == (400, "bad_message")
    await bindings.stop()


async def test_nobody_answering_and_too_slow_are_503s_named_for_the_service() -> None:
    bus = MemoryBus()
    with pytest.raises(DependencyUnavailable) as absent:
        await Toy(bus).echo(Echo(text="hi"))
    assert absent.value.code == "toy_unavailable"
    bindings = Bindings(Toy).bind(Toy.echo, echo).bind(Toy.slow, slow)
    await bindings.serve(bus)
    with pytest.raises(DependencyUnavailable) as late:
        await Toy(bus).slow(Echo(text="hi"))
    assert late.value.code == "toy_timeout"
    await bindings.stop()
    with pytest.raises(DependencyUnavailable):
        await Toy(bus).echo(Echo(text="hi"))  # stopped: nobody answers any more


async def test_an_owner_cannot_start_without_a_handler_for_every_rpc() -> None:
    with pytest.raises(TypeError, match="no handler for slow"):
        await Bindings(Toy).bind(Toy.echo, echo).serve(MemoryBus())
    with pytest.raises(TypeError, match="not an RPC of Toy"):
        Bindings(Toy).bind(Metering.usage, echo)  # type: ignore[arg-type]


def test_every_rpc_has_its_own_subject_under_its_service() -> None:
    subjects = [rpc.subject for contract in (Chat, Ingest, Metering) for rpc in contract.rpcs()]
    assert len(subjects) == len(set(subjects))
    for contract in (Chat, Ingest, Metering):
        for rpc in contract.rpcs():
            assert rpc.service == contract.service
            assert rpc.subject in (f"obdal.status.{contract.service}",) or rpc.subject.startswith(
                f"obdal.{contract.service}."
            )
            assert 0 < rpc.timeout <= 125


async def test_metering_answers_mongodb_down_as_one_503_code_on_every_rpc() -> None:
    """The bindings map pymongo's errors once; no store maps them itself."""
    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        "mongodb://127.0.0.1:9/", serverSelectionTimeoutMS=200
    )
    try:
        # No NATS either: every call fails at MongoDB before it needs a session's key.
        nc = NatsClient()
        keys = SessionKeys(nc.jetstream())
        open_handoffs = KeyValue(
            name="handoffs", stream="KV_handoffs", pre="$KV.handoffs.", js=nc.jetstream(), direct=False
        )
        sessions = SessionStore(mongo, "down", keys=keys)
        store = MeteringStore(mongo, "down")
        rollups = Rollups(mongo, "down", refresh_s=1.0)
        groups = Groups(mongo, "down", keys=keys)
        bindings = metering_bindings(
            store=store,
            sessions=sessions,
            feedback=FeedbackStore(mongo, "down", keys=keys, rollups=rollups),
            handoffs=Handoffs(
                mongo, "down", nc=nc, kv=open_handoffs, keys=keys, sessions=sessions, rollups=rollups
            ),
            eraser=Eraser(
                mongo, "down", sessions, keys=keys, groups=groups, rollups=rollups, handoffs=open_handoffs
            ),
            reports=Reports(mongo, "down", keys=keys, groups=groups, rollups=rollups),
            checks={},
        )
        bus = MemoryBus()
        await bindings.serve(bus)
        metering = Metering(bus)
        today = date.today()
        calls = [
            metering.usage(UsageQuery(app_id="app_x", start_date=today, end_date=today)),
            metering.retention(RetentionQuery(app_id="app_x")),
            metering.set_retention(RetentionPolicy(app_id="app_x", session_ttl_days=3)),
            metering.analytics(AnalyticsQuery(app_id="app_x", start_date=today, end_date=today)),
            metering.unanswered(UnansweredQuery(app_id="app_x", start_date=today, end_date=today)),
            metering.handoff(HandoffRequest(app_id="app_x", session_id="sess_1", key_id="key_1")),
            metering.resolve_handoff(HandoffResolve(app_id="app_x", session_id="sess_1", key_id="key_1")),
            metering.agent_message(
                AgentMessageCreate(app_id="app_x", session_id="sess_1", key_id="key_1", content="hi")
            ),
            metering.session_events(SessionEventsQuery(app_id="app_x", session_id="sess_1")),
        ]
        for call in calls:
            with pytest.raises(DependencyUnavailable) as exc:
                await call
            assert exc.value.code == "mongo_unavailable"
        status = await metering.status(StatusQuery())
        assert (status.ok, status.service) == (True, "metering")  # no checks given: nothing to fail
        await bindings.stop()
    finally:
        await mongo.close()


async def test_erasing_a_sessions_context_with_redis_down_is_a_503_to_retry() -> None:
    """Reading and writing history degrade silently; erasing it must not (the client retries)."""
    redis = Redis.from_url("redis://127.0.0.1:9/", socket_connect_timeout=0.2)
    try:
        history = SessionHistory(redis, max_messages=12, ttl_s=60)
        bindings = chat_bindings(history=history, checks={})
        bus = MemoryBus()
        await bindings.serve(bus)
        with pytest.raises(DependencyUnavailable) as exc:
            await Chat(bus).erase_history(HistoryErase(app_id="app_x", session_ids=["sess_1"]))
        assert exc.value.code == "redis_unavailable"
        nothing = await Chat(bus).erase_history(HistoryErase(app_id="app_x", session_ids=[]))
        assert nothing.sessions_erased == 0
        await bindings.stop()
    finally:
        await redis.aclose()
