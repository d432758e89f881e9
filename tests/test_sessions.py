"""Usage, sessions and erasure through the public API of the running stack (and the stores behind it)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from obdal_gateway.identity import sign_user
from tests.api import Api
from tests.conftest import Servers
from tests.test_end_to_end import POLICY


@pytest.fixture(scope="module")
def hot(servers: Servers) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(servers.redis.url)
    yield client
    client.close()


def chat_usage(api: Api, key: str, message: str, **body: Any) -> dict[str, Any]:
    """One chat (streamed when ``stream`` is set); its ``end`` payload with session id and usage."""
    if body.get("stream"):
        reply = api.chat_stream(key, message, **{k: v for k, v in body.items() if k != "stream"})
        assert reply.status == 200
        end: dict[str, Any] = reply.one("end")
        return end
    response = api.chat(key, message, **body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def get(api: Api, key: str, path: str, **params: Any) -> Any:
    response = api.http.get(path, headers=api.auth(key), params=params)
    assert response.status_code == 200, response.text
    return response.json()


def wait_sessions(api: Api, key: str, count: int, **params: Any) -> list[dict[str, Any]]:
    """Every session of the app (following cursors) once there are ``count`` of them."""
    deadline = time.monotonic() + 30
    while True:
        items = api.sessions(key, **params)
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.1)


def export(api: Api, key: str, **params: Any) -> list[dict[str, Any]]:
    with api.http.stream("GET", "/v1/sessions/export", headers=api.auth(key), params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in response.iter_lines() if line]


def test_usage_is_exact_after_concurrent_chats_per_key_and_model(api: Api) -> None:
    app_id, key_a = api.new_tenant("usage")
    key_b = str(api.create_key(app_id, name="second")["key"])
    api.index(key_a, "policy.md", POLICY)
    jobs = [(key_a if n % 3 else key_b, n % 2 == 0) for n in range(12)]
    with ThreadPoolExecutor(6) as pool:
        ends = list(
            pool.map(
                lambda job: chat_usage(api, job[0], "How long is the refund window?", stream=job[1]), jobs
            )
        )
    usages = [e["usage"] for e in ends]
    expected_tokens = sum(u["total_tokens"] for u in usages)

    body = api.wait_usage(key_a, len(jobs))
    assert body["total_requests"] == len(jobs)
    assert body["total_tokens"] == expected_tokens
    assert body["prompt_tokens"] == sum(u["prompt_tokens"] for u in usages)
    assert body["completion_tokens"] == sum(u["completion_tokens"] for u in usages)
    by_key = {b["group"]: b for b in api.usage(key_a, group_by="key")["breakdown"]}
    ids = {k["name"]: k["key_id"] for k in api.admin.get(f"/v1/admin/apps/{app_id}/keys").json()["keys"]}
    expected_b = [e["usage"]["total_tokens"] for e, job in zip(ends, jobs, strict=True) if job[0] == key_b]
    assert by_key[ids["second"]]["requests"] == len(expected_b)
    assert by_key[ids["second"]]["total_tokens"] == sum(expected_b)
    assert by_key[ids["test key"]]["requests"] == len(jobs) - len(expected_b)
    assert len(by_key) == 2
    # The breakdown pages (a year of days at most per answer); the totals always cover the range.
    first = api.usage(key_a, group_by="key", limit="1")
    second = api.usage(key_a, group_by="key", limit="1", cursor=first["next_cursor"])
    assert [b["group"] for b in first["breakdown"] + second["breakdown"]] == sorted(by_key)
    assert second["next_cursor"] is None
    assert first["total_tokens"] == second["total_tokens"] == expected_tokens
    wrong = api.http.get(
        "/v1/usage", headers=api.auth(key_a), params={"group_by": "model", "cursor": first["next_cursor"]}
    )
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (400, "invalid_cursor")
    only_b = api.usage(key_a, key_id=ids["second"])
    assert (only_b["total_requests"], only_b["total_tokens"]) == (len(expected_b), sum(expected_b))
    by_model = api.usage(key_a, group_by="model")["breakdown"]
    assert [(b["group"], b["requests"]) for b in by_model] == [("obdal/extractive", len(jobs))]


def test_session_history_listing_and_export(api: Api) -> None:
    _, key = api.new_tenant("sessions")
    file_id = api.index(key, "policy.md", POLICY)
    first = chat_usage(api, key, "Which courier do you ship with?", user="alice", stream=True)
    session_id = first["session_id"]
    second = chat_usage(api, key, "How long is the refund window?", session_id=session_id, user="alice")
    other = chat_usage(api, key, "How are refunds paid?", user="bob")

    items = wait_sessions(api, key, 2)
    detail = api.wait_session(key, session_id, messages=4)
    assert [i["session_id"] for i in items] == [other["session_id"], session_id]  # newest first
    mine = items[1]
    assert mine["message_count"] == 4
    assert mine["total_tokens"] == first["usage"]["total_tokens"] + second["usage"]["total_tokens"]
    assert mine["preview"] == "Which courier do you ship with?"
    assert mine["user"] == "alice"
    assert mine["started_at"] <= mine["last_at"]

    messages = detail["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == "Which courier do you ship with?"
    assert "Zorblax" in messages[1]["content"]
    assert messages[1]["usage"] == first["usage"]
    assert messages[3]["usage"] == second["usage"]
    assert messages[1]["sources"][0]["file_id"] == file_id
    assert messages[3]["message_id"] == second["message_id"]
    assert all(m["timestamp"] for m in messages)

    assert [i["session_id"] for i in api.sessions(key, user="bob")] == [other["session_id"]]
    assert api.sessions(key, start_date="2001-01-01", end_date="2001-12-31") == []
    lines = export(api, key)
    assert [line["session_id"] for line in lines] == [other["session_id"], session_id]
    assert lines[1]["messages"] == messages
    assert [line["session_id"] for line in export(api, key, user="alice", include_all="true")] == [session_id]


def test_pagination_walks_every_session_once_while_sessions_are_created(api: Api) -> None:
    _, key = api.new_tenant("paging")
    existing = {chat_usage(api, key, f"question {n}")["session_id"] for n in range(9)}
    assert {i["session_id"] for i in wait_sessions(api, key, len(existing))} == existing

    created: list[str] = []
    done = threading.Event()

    def keep_creating() -> None:
        while not done.is_set():
            created.append(chat_usage(api, key, "a new session")["session_id"])

    writer = threading.Thread(target=keep_creating)
    writer.start()
    try:
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = get(
                api,
                key,
                "/v1/sessions",
                limit=2,
                include_all="true",
                **({"cursor": cursor} if cursor else {}),
            )
            assert len(page["sessions"]) <= 2
            seen += [i["session_id"] for i in page["sessions"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            time.sleep(0.15)  # let new sessions land between pages
    finally:
        done.set()
        writer.join()
    assert created, "no session was created during the walk"
    assert len(seen) == len(set(seen)), "a session was listed twice"
    assert existing <= set(seen)
    assert set(seen) <= existing | set(created)


def test_erasing_a_session_leaves_nothing_readable(api: Api, mongo: Any, hot: redis.Redis) -> None:
    app_id, key = api.new_tenant("erase")
    api.index(key, "policy.md", POLICY)
    session_id = chat_usage(api, key, "Which courier do you ship with?")["session_id"]
    follow_up = chat_usage(api, key, "How long is the refund window?", session_id=session_id)
    fresh = chat_usage(api, key, "How long is the refund window?")
    # The first turn is context: the same question costs more prompt tokens in the continued session.
    assert follow_up["usage"]["prompt_tokens"] > fresh["usage"]["prompt_tokens"]
    wait_sessions(api, key, 2)
    before = api.wait_usage(key, 3)
    api.wait_session(key, session_id, messages=4)

    response = api.http.delete(f"/v1/sessions/{session_id}", headers=api.auth(key))
    assert response.status_code == 200, response.text
    assert response.json() == {"session_id": session_id, "deleted": True, "messages_erased": 4}

    missing = api.http.get(f"/v1/sessions/{session_id}", headers=api.auth(key))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "session_not_found"
    assert session_id not in {i["session_id"] for i in api.sessions(key, include_all="true")}
    assert session_id not in {line["session_id"] for line in export(api, key, include_all="true")}
    assert mongo.turns.count_documents({"app_id": app_id, "session_id": session_id}) == 0
    assert mongo.sessions.count_documents({"app_id": app_id, "session_id": session_id}) == 0
    assert hot.exists(f"obdal:history:{app_id}:{session_id}") == 0
    assert api.http.delete(f"/v1/sessions/{session_id}", headers=api.auth(key)).status_code == 404
    # Usage holds no content and stays.
    assert api.usage(key)["total_tokens"] == before["total_tokens"]

    # The next chat with that id starts fresh: no context from before the erasure.
    again = chat_usage(api, key, "How long is the refund window?", session_id=session_id)
    assert again["usage"]["prompt_tokens"] == fresh["usage"]["prompt_tokens"]
    assert session_id in {i["session_id"] for i in wait_sessions(api, key, 2, include_all="true")}
    messages = get(api, key, f"/v1/sessions/{session_id}")["messages"]
    assert [m["content"] for m in messages][0::2] == ["How long is the refund window?"]
    audit = mongo.audit.find_one({"app_id": app_id, "action": "session.deleted", "target": session_id})
    deadline = time.monotonic() + 10
    while audit is None and time.monotonic() < deadline:
        time.sleep(0.1)
        audit = mongo.audit.find_one({"app_id": app_id, "action": "session.deleted", "target": session_id})
    assert audit is not None


def test_erasing_an_end_user_erases_all_their_sessions(api: Api, mongo: Any, hot: redis.Redis) -> None:
    app_id, key = api.new_tenant("erase-user")
    alice = {
        chat_usage(api, key, f"alice asks {n}", user="alice@example.com")["session_id"] for n in range(3)
    }
    bob = chat_usage(api, key, "bob asks", user="bob")["session_id"]
    wait_sessions(api, key, 4)
    tokens = api.wait_usage(key, 4)["total_tokens"]

    response = api.http.delete("/v1/users/alice@example.com", headers=api.auth(key))
    assert response.status_code == 200, response.text
    assert set(response.json()["sessions_erased"]) == alice
    assert response.json()["messages_erased"] == 6

    assert [i["session_id"] for i in api.sessions(key, include_all="true")] == [bob]
    assert api.sessions(key, include_all="true", user="alice@example.com") == []
    for session_id in alice:
        assert api.http.get(f"/v1/sessions/{session_id}", headers=api.auth(key)).status_code == 404
        assert hot.exists(f"obdal:history:{app_id}:{session_id}") == 0
    assert mongo.turns.count_documents({"app_id": app_id, "user": "alice@example.com"}) == 0
    assert api.usage(key)["total_tokens"] == tokens
    again = api.http.delete("/v1/users/alice@example.com", headers=api.auth(key))
    assert again.status_code == 200
    assert again.json()["sessions_erased"] == []


def test_a_session_belongs_to_the_key_and_end_user_that_started_it(api: Api, hot: redis.Redis) -> None:
    """Finding 2 of the attack: another visitor holding the same publishable key sent a victim's
    session id, got the victim's turns as context, appended to the session and overwrote its user."""
    app_id, secret = api.new_tenant("owners")
    api.index(secret, "policy.md", POLICY)
    origin = {"Origin": "https://help.owners.example.com"}
    widget = api.create_key(app_id, kind="publishable", allowed_origins=[origin["Origin"]])["key"]
    # The victim is a signed-in customer: the site's backend signs its id (docs/identity.md).
    made = api.admin.post(f"/v1/admin/apps/{app_id}/identity-secret")
    assert made.status_code == 201, made.text
    victim_id = {"user": "victim", "user_hash": sign_user(made.json()["identity_secret"], "victim")}

    def widget_chat(message: str, **body: Any) -> dict[str, Any]:
        response = api.http.post(
            "/v1/chat", headers={**api.auth(widget), **origin}, json={"message": message, **body}
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    victim = widget_chat("Which courier do you ship with?", **victim_id)
    session_id = victim["session_id"]
    fresh = widget_chat("How long is the refund window?", **victim_id)
    # The victim continues its own session, with its context.
    follow_up = widget_chat("How long is the refund window?", session_id=session_id, **victim_id)
    assert follow_up["session_id"] == session_id
    assert follow_up["usage"]["prompt_tokens"] > fresh["usage"]["prompt_tokens"]

    # Another visitor with the same key and the victim's id, with or without claiming its user
    # (unsigned, so not counted): a new conversation, without the victim's context.
    for user in ("attacker", "victim", None):
        body = {"session_id": session_id, **({"user": user} if user else {})}
        stolen = widget_chat("How long is the refund window?", **body)
        assert stolen["session_id"] != session_id
        assert stolen["usage"]["prompt_tokens"] == fresh["usage"]["prompt_tokens"]
    streamed = api.chat_stream(widget, "Hi there", session_id=session_id, user="attacker", headers=origin)
    assert streamed.status == 200
    assert streamed.one("end")["session_id"] != session_id

    # A publishable key cannot choose a new id either.
    chosen = widget_chat("Which courier do you ship with?", session_id="sess_ChosenByTheWidget1")
    assert chosen["session_id"] != "sess_ChosenByTheWidget1"
    assert hot.exists(f"obdal:session-owner:{app_id}:sess_ChosenByTheWidget1") == 0

    # A secret key chooses ids (the product page's sess_9Rna21), and the end user never changes.
    first = chat_usage(api, secret, "Which courier do you ship with?", session_id="sess_9Rna21", user="alice")
    assert first["session_id"] == "sess_9Rna21"
    again = chat_usage(api, secret, "How long is the refund window?", session_id="sess_9Rna21", user="alice")
    assert again["session_id"] == "sess_9Rna21"
    for other in ({"user": "mallory"}, {}):
        refused = api.chat(secret, "Tell me everything", session_id="sess_9Rna21", **other)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "session_not_yours"
    refused_stream = api.chat_stream(secret, "Tell me everything", session_id="sess_9Rna21", user="mallory")
    assert refused_stream.status == 409
    # The widget's session is not the secret key's either.
    assert api.chat(secret, "Hello", session_id=session_id, user="victim").status_code == 409

    victim_session = api.wait_session(secret, session_id, messages=4)
    time.sleep(1)  # anything wrongly appended would be metered by now
    victim_session = get(api, secret, f"/v1/sessions/{session_id}")
    assert len(victim_session["messages"]) == 4  # its own two turns, nobody else's
    assert victim_session["user"] == "victim"
    assert session_id in {s["session_id"] for s in api.sessions(secret, include_all="true", user="victim")}
    alice = api.wait_session(secret, "sess_9Rna21", messages=4)
    assert alice["user"] == "alice"
    assert len(alice["messages"]) == 4


def test_sessions_of_another_app_are_invisible(api: Api) -> None:
    _, key = api.new_tenant("owner")
    _, stranger = api.new_tenant("stranger")
    session_id = chat_usage(api, key, "private question", user="carol")["session_id"]
    wait_sessions(api, key, 1)
    assert api.http.get(f"/v1/sessions/{session_id}", headers=api.auth(stranger)).status_code == 404
    assert api.sessions(stranger, include_all="true") == []
    assert api.http.delete(f"/v1/sessions/{session_id}", headers=api.auth(stranger)).status_code == 404
    assert api.http.delete("/v1/users/carol", headers=api.auth(stranger)).json()["sessions_erased"] == []
    assert get(api, key, f"/v1/sessions/{session_id}")["session_id"] == session_id


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/v1/sessions", {"limit": "0"}, 400, "invalid_limit"),
        ("/v1/sessions", {"limit": "101"}, 400, "invalid_limit"),
        ("/v1/sessions", {"cursor": "not-a-cursor"}, 400, "invalid_cursor"),
        ("/v1/sessions", {"start_date": "yesterday"}, 400, "invalid_date"),
        ("/v1/sessions", {"start_date": "2026-02-30"}, 400, "invalid_date"),
        ("/v1/sessions", {"start_date": "2026-03-02", "end_date": "2026-03-01"}, 400, "invalid_date_range"),
        ("/v1/sessions", {"include_all": "true", "end_date": "2026-03-01"}, 400, "invalid_date_range"),
        ("/v1/sessions/export", {"end_date": "03/01/2026"}, 400, "invalid_date"),
        ("/v1/sessions/sess_doesnotexist", {}, 404, "session_not_found"),
        ("/v1/sessions/bad$id", {}, 404, "session_not_found"),
        ("/v1/usage", {"end_date": "2026-13-01"}, 400, "invalid_date"),
        ("/v1/usage", {"group_by": "week"}, 400, "invalid_group_by"),
    ],
)
def test_bad_session_queries_are_client_errors(
    api: Api, path: str, params: dict[str, str], status: int, code: str
) -> None:
    _, key = api.new_tenant("bad-queries")
    response = api.http.get(path, headers=api.auth(key), params=params)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_session_endpoints_need_their_scopes(api: Api) -> None:
    app_id = api.create_app("scopes")
    chat_only = str(api.create_key(app_id, scopes=["chat"])["key"])
    reader = str(api.create_key(app_id, name="reader", scopes=["sessions:read"])["key"])
    for method, path, key in [
        ("GET", "/v1/sessions", chat_only),
        ("GET", "/v1/sessions/export", chat_only),
        ("GET", "/v1/sessions/sess_x", chat_only),
        ("DELETE", "/v1/sessions/sess_x", reader),
        ("DELETE", "/v1/users/alice", reader),
    ]:
        response = api.http.request(method, path, headers=api.auth(key))
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "insufficient_scope"


def test_retention_policy_is_set_per_app_by_the_operator(api: Api) -> None:
    app_id, key = api.new_tenant("retention")
    path = f"/v1/admin/apps/{app_id}/retention"
    assert api.admin.get(path).json() == {"app_id": app_id, "session_ttl_days": None}
    assert api.admin.put(path, json={"session_ttl_days": 30}).json() == {
        "app_id": app_id,
        "session_ttl_days": 30,
    }
    assert api.admin.get(path).json()["session_ttl_days"] == 30
    assert api.admin.put(path, json={"session_ttl_days": 0}).status_code == 400
    assert api.admin.put(path, json={"days": 3}).status_code == 400
    assert api.admin.put(path, json={"session_ttl_days": None}).json()["session_ttl_days"] is None
    assert api.admin.get("/v1/admin/apps/app_unknown0000000/retention").status_code == 404
    assert api.http.get(path, headers=api.auth(key)).status_code == 401
