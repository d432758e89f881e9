"""Feedback on answers through the public API of the running stack (and the store behind it)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx

from tests.api import Api
from tests.test_end_to_end import POLICY

ORIGIN = {"Origin": "https://help.feedback.example.com"}


def ask(api: Api, key: str, message: str, **body: Any) -> dict[str, Any]:
    response = api.chat(key, message, **body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def rate(
    api: Api, key: str, message_id: str, *, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    return api.http.post(
        f"/v1/messages/{message_id}/feedback", headers={**api.auth(key), **(headers or {})}, json=body
    )


def feedback(api: Api, key: str, **params: Any) -> dict[str, Any]:
    response = api.http.get("/v1/feedback", headers=api.auth(key), params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_a_rating_is_changed_listed_and_shown_with_its_session(api: Api) -> None:
    _, key = api.new_tenant("feedback")
    api.index(key, "policy.md", POLICY)
    answer = ask(api, key, "Which courier do you ship with?", user="alice")
    message_id, session_id = answer["message_id"], answer["session_id"]

    # Rated at once: the turn may not be stored yet, metering waits for it.
    first = rate(api, key, message_id, rating="up")
    assert first.status_code == 200, first.text
    up = first.json()
    assert set(up) == {"message_id", "session_id", "rating", "reason", "comment", "created_at", "updated_at"}
    assert (up["message_id"], up["session_id"], up["rating"], up["reason"], up["comment"]) == (
        message_id,
        session_id,
        "up",
        None,
        None,
    )
    assert up["created_at"].endswith("Z")

    changed = rate(api, key, message_id, rating="down", reason="outdated", comment="We moved to Parcelo.")
    assert changed.status_code == 200, changed.text
    down = changed.json()
    assert (down["rating"], down["reason"], down["comment"]) == ("down", "outdated", "We moved to Parcelo.")
    assert down["created_at"] == up["created_at"]
    assert down["updated_at"] >= up["updated_at"]

    listed = feedback(api, key)
    assert listed["next_cursor"] is None
    [item] = listed["feedback"]
    assert item == {
        **down,
        "user": "alice",
        "question": "Which courier do you ship with?",
        "answer": answer["content"],
    }
    assert feedback(api, key, rating="down")["feedback"] == [item]
    assert feedback(api, key, rating="up")["feedback"] == []
    assert feedback(api, key, user="bob")["feedback"] == []
    assert feedback(api, key, start_date="2001-01-01", end_date="2001-12-31")["feedback"] == []

    shown = {
        "rating": "down",
        "reason": "outdated",
        "comment": "We moved to Parcelo.",
        "updated_at": down["updated_at"],
    }
    messages = api.wait_session(key, session_id, messages=2)["messages"]
    assert [m["feedback"] for m in messages] == [None, shown]
    with api.http.stream("GET", "/v1/sessions/export", headers=api.auth(key)) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [m["feedback"] for m in lines[0]["messages"]] == [None, shown]

    # A whitespace comment is no comment.
    blank = rate(api, key, message_id, rating="up", comment="   ")
    assert (blank.status_code, blank.json()["comment"]) == (200, None)


def test_a_publishable_key_rates_only_answers_of_the_session_it_names(api: Api) -> None:
    app_id, secret = api.new_tenant("feedback-widget")
    widget = api.create_key(app_id, kind="publishable", allowed_origins=[ORIGIN["Origin"]])["key"]
    response = api.http.post(
        "/v1/chat", headers={**api.auth(widget), **ORIGIN}, json={"message": "How are refunds paid?"}
    )
    assert response.status_code == 200, response.text
    mine = response.json()
    other = ask(api, secret, "How long is the refund window?")
    api.wait_session(secret, other["session_id"], messages=2)

    ok = rate(api, widget, mine["message_id"], headers=ORIGIN, rating="up", session_id=mine["session_id"])
    assert ok.status_code == 200, ok.text
    assert ok.json()["session_id"] == mine["session_id"]

    wrong_session = rate(
        api, widget, other["message_id"], headers=ORIGIN, rating="down", session_id=mine["session_id"]
    )
    assert (wrong_session.status_code, wrong_session.json()["error"]["code"]) == (404, "message_not_found")
    unnamed = rate(api, widget, other["message_id"], headers=ORIGIN, rating="down")
    assert (unnamed.status_code, unnamed.json()["error"]["code"]) == (400, "session_id_required")
    # Read scopes are never a publishable key's.
    listing = api.http.get("/v1/feedback", headers={**api.auth(widget), **ORIGIN})
    assert (listing.status_code, listing.json()["error"]["code"]) == (403, "insufficient_scope")
    assert [i["message_id"] for i in feedback(api, secret)["feedback"]] == [mine["message_id"]]


def test_bad_ratings_are_refused(api: Api) -> None:
    _, key = api.new_tenant("feedback-bad")
    _, stranger = api.new_tenant("feedback-stranger")
    answer = ask(api, key, "How are refunds paid?")
    api.wait_session(key, answer["session_id"], messages=2)
    message_id = answer["message_id"]

    cases: list[tuple[str, dict[str, Any], int, str]] = [
        (message_id, {"rating": "meh"}, 422, "invalid_feedback"),
        (message_id, {"rating": "down", "reason": "rude"}, 422, "invalid_feedback"),
        (message_id, {"rating": "down", "comment": "x" * 2001}, 413, "comment_too_long"),
        (message_id, {"rating": "up", "extra": 1}, 400, "invalid_request"),
        (message_id, {"rating": "up", "session_id": "sess_NotThisOne000000"}, 404, "message_not_found"),
        ("msg_Unknown000000000", {"rating": "up"}, 404, "message_not_found"),
        ("not-a-message", {"rating": "up"}, 404, "message_not_found"),
    ]
    for target, body, status, code in cases:
        response = rate(api, key, target, **body)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), (
            body,
            response.text,
        )
    # Another app's answer does not exist for this key.
    foreign = rate(api, stranger, message_id, rating="up")
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "message_not_found")
    assert rate(api, key, message_id, rating="down", comment="x" * 2000).status_code == 200
    bad_cursor = api.http.get("/v1/feedback", headers=api.auth(key), params={"cursor": "nope"})
    assert (bad_cursor.status_code, bad_cursor.json()["error"]["code"]) == (400, "invalid_cursor")
    bad_rating = api.http.get("/v1/feedback", headers=api.auth(key), params={"rating": "meh"})
    assert bad_rating.status_code == 400


def test_erasing_a_session_or_an_end_user_erases_their_ratings(api: Api, mongo: Any) -> None:
    app_id, key = api.new_tenant("feedback-erase")
    kept = ask(api, key, "How are refunds paid?", user="bob")
    gone = ask(api, key, "How long is the refund window?", user="bob")
    alice = ask(api, key, "Which courier do you ship with?", user="alice")
    for answer in (kept, gone, alice):
        assert rate(api, key, answer["message_id"], rating="down", comment="secret words").status_code == 200
    assert len(feedback(api, key)["feedback"]) == 3

    assert api.http.delete(f"/v1/sessions/{gone['session_id']}", headers=api.auth(key)).status_code == 200
    assert api.http.delete("/v1/users/alice", headers=api.auth(key)).status_code == 200

    assert [i["message_id"] for i in feedback(api, key)["feedback"]] == [kept["message_id"]]
    for answer in (gone, alice):
        assert mongo.feedback.count_documents({"app_id": app_id, "message_id": answer["message_id"]}) == 0
    assert mongo.feedback.count_documents({"app_id": app_id, "message_id": kept["message_id"]}) == 1
    stored = mongo.feedback.find_one({"app_id": app_id, "message_id": kept["message_id"]})
    assert "secret words" not in json.dumps(stored, default=str)  # sealed with the session's key
    # An erased answer cannot be rated again.
    again = rate(api, key, gone["message_id"], rating="up")
    assert (again.status_code, again.json()["error"]["code"]) == (404, "message_not_found")


def test_cursor_paging_visits_every_rating_once(api: Api) -> None:
    _, key = api.new_tenant("feedback-paging")
    rated = set()
    for n in range(25):
        answer = ask(api, key, f"question {n}")
        assert rate(api, key, answer["message_id"], rating="up" if n % 2 else "down").status_code == 200
        rated.add(answer["message_id"])
    seen: list[str] = []
    cursor: dict[str, str] = {}
    while True:
        page = feedback(api, key, limit=4, **cursor)
        assert len(page["feedback"]) <= 4
        seen += [i["message_id"] for i in page["feedback"]]
        if page["next_cursor"] is None:
            break
        cursor = {"cursor": page["next_cursor"]}
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == rated
    # As times, not strings: a time on a whole second is written without a fraction.
    created = [datetime.fromisoformat(i["created_at"]) for i in feedback(api, key, limit=100)["feedback"]]
    assert created == sorted(created, reverse=True)
