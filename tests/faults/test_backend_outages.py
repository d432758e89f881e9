"""NATS restarted, MongoDB stopped, Redis stopped: clean 503s (never hangs or 500s) during the
outage, automatic recovery after it, and no event lost or doubled. One stack on servers of its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from obdal.servers import nats_server
from obdal_common import subjects
from obdal_common.errors import DependencyUnavailable
from obdal_common.messaging import close, connect, key_value
from obdal_common.schemas import FileStatus
from obdal_ingest.statuses import FileStatusStore
from obdal_retrieval.qdrant_server import QdrantServerBackend
from tests.faults.backends import INGEST_MAX_DELIVER, OutageStack, outage_stack, wait_until
from tests.webhook_receiver import Receiver

RECOVERY_S = 10.0  # the bound: requests succeed within 10 s of the server being back
ANSWER_S = 10.0  # no request may hang longer than this during an outage
COLLECTION = "obdal_chunks_obdal_hashing_384"  # the offline embedder's collection


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutageStack]:
    with outage_stack(tmp_path_factory.mktemp("outage")) as stack:
        yield stack


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_unavailable(response: httpx.Response, took: float) -> None:
    assert response.status_code == 503, response.text
    assert set(response.json()["error"]) == {"code", "message"}
    assert took < ANSWER_S, f"answered after {took:.1f} s"


def test_nats_restart_fails_cleanly_then_recovers_without_losing_events(outage: OutageStack) -> None:
    api = outage.api
    _, key = api.new_tenant("nats-restart")
    before = [api.chat(key, f"before {n}") for n in range(3)]
    assert all(r.status_code == 200 for r in before)
    uploaded = api.upload(key, "before.txt", b"The warranty lasts two years.")
    assert uploaded.status_code == 202

    outage.nats.stop()
    auth = api.auth(key)
    for call in (
        lambda: api.chat(key, "during the outage"),
        lambda: api.http.get("/v1/usage", headers=auth),
        lambda: api.http.get("/v1/sessions", headers=auth),
        lambda: api.http.get("/v1/files", headers=auth),
        lambda: api.upload(key, "during.txt", b"Not now."),
        lambda: api.upload(key, "waiting.txt", b"Not now either.", wait="true"),
    ):
        assert_unavailable(*timed(call))
    status = outage.status()
    assert status["dependencies"]["nats"]["ok"] is False  # type: ignore[index]

    outage.restart_nats()
    took = wait_until(lambda: api.chat(key, "after").status_code == 200, timeout=RECOVERY_S, what="chat")
    print(f"chat served {took:.1f} s after NATS came back")
    after = [api.chat(key, f"after {n}") for n in range(2)]
    assert all(r.status_code == 200 for r in after)
    outage.ready(timeout=RECOVERY_S)

    # Every event published before, around and after the restart is stored once.
    answered = [r.json() for r in before + after]
    usage = api.wait_usage(key, len(answered) + 1)
    assert usage["total_requests"] == len(answered) + 1  # + the "after" probe that succeeded
    # A key created after the restart works at once: the key watch followed the restart.
    _, fresh = api.new_tenant("after-restart")
    assert api.chat(fresh, "hello").status_code == 200


def test_webhook_deliveries_survive_a_nats_restart_mid_retry(outage: OutageStack) -> None:
    """Events stored and being retried when NATS goes, and one published just before: each
    reaches the receiver once NATS and the receiver are back, once, in order."""
    api = outage.api
    app_id, key = api.new_tenant("hooks-nats")
    with Receiver(fail_with=503) as receiver:
        made = api.http.post("/v1/webhooks", headers=api.auth(key), json={"url": receiver.url})
        assert made.status_code == 201, made.text
        receiver.secret = made.json()["secret"]
        revoked = [api.create_key(app_id, name=f"to revoke {n}")["key_id"] for n in range(3)]
        for key_id in revoked[:2]:
            assert api.admin.delete(f"/v1/admin/keys/{key_id}").status_code == 200
        wait_until(lambda: len(receiver.refused) >= 2, timeout=30, what="failed attempts")

        outage.nats.stop()
        time.sleep(1.5)  # retries come due meanwhile; the bus is gone
        outage.restart_nats()
        outage.ready(timeout=60)
        assert api.admin.delete(f"/v1/admin/keys/{revoked[2]}").status_code == 200
        receiver.fail_with = 0
        got = receiver.wait("key.revoked", 3, timeout=60)
        time.sleep(1.0)  # anything doubled would have arrived by now
    assert [r.data["key_id"] for r in got] == revoked
    assert len({r.msg_id for r in receiver.accepted}) == len(receiver.accepted) == 3
    assert all(r.verified for r in receiver.accepted)


async def test_a_wait_for_an_upload_ends_when_nats_goes(tmp_path: Path) -> None:
    """What ``POST /v1/files?wait=`` waits on: the outcome as soon as it is written, and a 503
    within a second or two when NATS goes away mid-wait, not at the end of the wait."""
    bus = nats_server(tmp_path).start()
    nc = await connect(bus.url, name="upload-wait")
    try:
        store = FileStatusStore(await key_value(nc.jetstream(), subjects.KV_FILES), js=nc.jetstream())
        now = datetime.now(UTC)
        queued = FileStatus(
            file_id="file_waiting00000000",
            app_id="app_waiting000000000",
            filename="hours.md",
            status="queued",
            size=5,
            content_type="text/markdown",
            sha256="0" * 64,
            created_at=now,
            updated_at=now,
        )
        await store.put(queued)

        def outcome() -> asyncio.Task[FileStatus | None]:
            return asyncio.create_task(
                store.outcome(
                    queued.app_id, queued.file_id, version=1, wait_s=60, connected=lambda: nc.is_connected
                )
            )

        ready = outcome()
        await asyncio.sleep(0.3)
        assert not ready.done()
        await store.update(queued.app_id, queued.file_id, "ready", chunks=1)
        settled = await asyncio.wait_for(ready, 2)
        assert settled is not None
        assert (settled.status, settled.chunks) == ("ready", 1)

        await store.update(queued.app_id, queued.file_id, "processing", version=1)
        waiting = outcome()
        await asyncio.sleep(0.3)
        bus.stop()
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable) as lost:
            await asyncio.wait_for(waiting, 10)
        assert lost.value.code == "nats_unavailable"
        assert time.monotonic() - started < 3
    finally:
        await close(nc)
        bus.stop()


def test_mongo_stopped_reads_fail_cleanly_and_writes_wait_in_jetstream(outage: OutageStack) -> None:
    api = outage.api
    _, key = api.new_tenant("mongo-outage")
    first = api.chat(key, "before")
    assert first.status_code == 200
    assert api.wait_usage(key, 1)["total_requests"] == 1

    outage.mongo.stop()
    auth = api.auth(key)
    for path in ("/v1/usage", "/v1/sessions", f"/v1/sessions/{first.json()['session_id']}"):
        assert_unavailable(*timed(lambda path=path: api.http.get(path, headers=auth)))  # type: ignore[misc]
    with ThreadPoolExecutor(4) as pool:
        during = list(pool.map(lambda n: api.chat(key, f"during {n}"), range(8)))
    assert [r.status_code for r in during] == [200] * 8, "chats do not need MongoDB"
    assert outage.status()["dependencies"]["mongo"]["ok"] is False  # type: ignore[index]

    outage.restart_mongo()
    answers = [first.json()] + [r.json() for r in during]
    usage = api.wait_usage(key, len(answers), timeout=30)
    time.sleep(1.0)  # anything still in flight would now show up as double counting
    usage = api.usage(key)
    assert usage["total_requests"] == len(answers)
    assert usage["total_tokens"] == sum(a["usage"]["total_tokens"] for a in answers)
    # Turns are stored apart from usage: wait for every session to show its two messages.
    expected = {a["session_id"]: 2 for a in answers}

    def listed() -> dict[str, int]:
        return {s["session_id"]: s["message_count"] for s in api.sessions(key)}

    wait_until(lambda: listed() == expected, timeout=30, what="every session stored", detail=listed)


def test_redis_stopped_chat_answers_without_history_and_recovers(outage: OutageStack) -> None:
    api = outage.api
    _, key = api.new_tenant("redis-outage", rate_limit_rpm=1000, token_budget=100_000)
    outage.redis.stop()
    during = api.chat(key, "is anyone there?")
    assert during.status_code == 200, "chat fails open: no rate limit, budget, answer cap, session history"
    assert "x-ratelimit-remaining" not in during.headers
    status = outage.status()
    assert status["dependencies"]["redis"]["ok"] is False  # type: ignore[index]
    assert "rate limiting unavailable" in outage.process.log()
    assert "session history unavailable" in outage.chat.log()
    assert "could not reserve tokens" in outage.chat.log()

    outage.restart_redis()
    wait_until(
        lambda: "x-ratelimit-remaining" in api.chat(key, "back?").headers, timeout=RECOVERY_S, what="limits"
    )
    outage.ready(timeout=RECOVERY_S)


def _big_text(tag: str) -> bytes:
    lines = (
        f"{tag} {n}: part {n} ships from warehouse {n % 7} within {n % 5 + 1} days." for n in range(6000)
    )
    return "\n\n".join(lines).encode()


@pytest.mark.timeout(600)  # three ingest worker start-ups, each ~30 s on a loaded machine
def test_ingest_worker_killed_mid_file_redelivers_and_indexes_once(outage: OutageStack) -> None:
    api = outage.api
    app_id, key = api.new_tenant("ingest-kill")

    def status(file_id: str) -> dict[str, Any]:
        body: dict[str, Any] = api.http.get(f"/v1/files/{file_id}", headers=api.auth(key)).json()
        return body

    big = api.upload(key, "catalogue.txt", _big_text("Catalogue")).json()["file_id"]
    wait_until(
        lambda: 10 < status(big).get("progress", 0) < 99,
        timeout=120,
        what="mid-file",
        detail=lambda: status(big),
    )
    outage.kill_ingest()
    outage.start_ingest()
    ready = api.wait_file(key, big, timeout=240)
    assert ready["status"] == "ready", ready
    assert ready["progress"] == 100

    # A file that kills its worker on every attempt: failed after max_deliver, the queue moves on.
    poison = api.upload(key, "poison.txt", _big_text("Poison")).json()["file_id"]
    started: list[str] = []
    for _ in range(INGEST_MAX_DELIVER - 1):
        wait_until(
            lambda: (s := status(poison).get("started_at")) is not None and s not in started,
            timeout=240,
            what="poison attempt started",
            detail=lambda: status(poison),
        )
        started.append(status(poison)["started_at"])
        outage.kill_ingest()
        outage.start_ingest()
    # Ingest owns the files: an upload waits for the restarted worker to answer (503 until then).
    wait_until(
        lambda: api.http.get("/v1/files", headers=api.auth(key)).status_code == 200,
        timeout=240,
        what="the restarted ingest worker answering",
    )
    good = api.upload(key, "good.txt", b"Gift cards never expire.").json()["file_id"]
    assert api.wait_file(key, good, timeout=240)["status"] == "ready"
    failed = api.wait_file(key, poison, timeout=60)
    assert failed["status"] == "failed"
    assert "stopped while processing" in failed["error"]

    # Exactly one copy of the big file's passages, none of the poison file's.
    assert outage.ingest is not None
    assert outage.ingest.stop() == 0
    logs = "".join(p.read_text() for p in outage.base.glob("ingest-*.log"))
    assert logs.count(f"indexed {big} ") == 1
    counts = asyncio.run(_count_points(outage.base / "qdrant", app_id, [big, poison]))
    assert counts == [ready["chunks"], 0]
    outage.start_ingest()


async def _count_points(path: Path, app_id: str, file_ids: list[str]) -> list[int]:
    backend = await QdrantServerBackend.open(f"path:{path}", collection=COLLECTION, dim=384)
    try:
        return [await backend.count(app_id, file_id) for file_id in file_ids]
    finally:
        await backend.close()
