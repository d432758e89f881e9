"""NATS restarted, MongoDB stopped, Redis stopped: clean 503s (never hangs or 500s) during the
outage, automatic recovery after it, and no event lost or doubled. One stack on servers of its own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.faults.backends import OutageStack, outage_stack, wait_until

RECOVERY_S = 10.0  # the bound: requests succeed within 10 s of the server being back
ANSWER_S = 10.0  # no request may hang longer than this during an outage


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
    sessions = api.http.get("/v1/sessions", headers=auth, params={"limit": 50}).json()["data"]
    assert sorted(s["session_id"] for s in sessions) == sorted(a["session_id"] for a in answers)
    assert all(s["message_count"] == 2 for s in sessions)


def test_redis_stopped_chat_answers_without_history_and_recovers(outage: OutageStack) -> None:
    api = outage.api
    _, key = api.new_tenant("redis-outage", rate_limit_rpm=1000)
    outage.redis.stop()
    during = api.chat(key, "is anyone there?")
    assert during.status_code == 200, "chat fails open: no rate limit, no session history"
    assert "x-ratelimit-remaining" not in during.headers
    status = outage.status()
    assert status["dependencies"]["redis"]["ok"] is False  # type: ignore[index]
    assert "rate limiting unavailable" in outage.process.log()
    assert "session history unavailable" in outage.chat.log()

    outage.restart_redis()
    wait_until(
        lambda: "x-ratelimit-remaining" in api.chat(key, "back?").headers, timeout=RECOVERY_S, what="limits"
    )
    outage.ready(timeout=RECOVERY_S)


def test_ingest_worker_killed_mid_file_redelivers_and_indexes_once(
    outage: OutageStack, tmp_path: Path
) -> None:
    del tmp_path
    pytest.skip("written next")
