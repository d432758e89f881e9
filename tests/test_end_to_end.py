"""One real request through every service: admin, upload, ingest, chat (SSE and JSON), usage, status."""

from __future__ import annotations

from tests.api import Api

POLICY = """# Returns

Our refund window is 45 days from delivery. Refunds go back to the original
payment method within 5 business days.

# Shipping

We ship every parcel with Zorblax Couriers to 31 countries.
"""


def test_grounded_streamed_answer_and_usage(api: Api) -> None:
    _, key = api.new_tenant("e2e")
    file_id = api.index(key, "policy.md", POLICY)
    file = api.http.get(f"/v1/files/{file_id}", headers=api.auth(key)).json()
    assert file["status"] == "ready"
    assert file["chunks"] >= 2
    assert file["filename"] == "policy.md"

    reply = api.chat_stream(key, "Which courier company do you ship with?")

    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["cache-control"] == "no-cache"
    assert reply.headers["x-accel-buffering"] == "no"
    names = reply.names()
    # Deltas as they are generated, then sources, then the end: nothing else, in this order.
    assert names.count("message") > 3
    assert names[-2:] == ["sources", "end"]
    assert set(names[:-2]) == {"message"}
    assert "Zorblax Couriers" in reply.text()
    sources = reply.one("sources")["sources"]
    assert sources[0]["file_id"] == file_id
    assert sources[0]["filename"] == "policy.md"
    assert "Zorblax" in sources[0]["snippet"]
    end = reply.one("end")
    assert end["session_id"].startswith("sess_")
    assert end["message_id"].startswith("msg_")
    usage = end["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    body = api.wait_usage(key, 1)
    assert body["total_requests"] == 1
    assert body["total_tokens"] == usage["total_tokens"]
    assert body["total_cost"] == 0.0
    assert body["breakdown"][0]["requests"] == 1


def test_json_answer_continues_the_session(api: Api) -> None:
    _, key = api.new_tenant("json")
    api.index(key, "policy.md", POLICY)

    first = api.chat(key, "How many days is the refund window?")
    assert first.status_code == 200, first.text
    body = first.json()
    assert "45 days" in body["content"]
    assert body["sources"]
    assert set(body) >= {"content", "session_id", "message_id", "sources", "usage"}

    second = api.chat(key, "And where does the money go?", session_id=body["session_id"])
    assert second.status_code == 200
    assert second.json()["session_id"] == body["session_id"]
    assert "original payment method" in second.json()["content"]

    usage = api.wait_usage(key, 2)
    assert usage["total_requests"] == 2
    assert usage["total_tokens"] == body["usage"]["total_tokens"] + second.json()["usage"]["total_tokens"]


def test_answer_says_so_when_documents_do_not_cover_it(api: Api) -> None:
    _, key = api.new_tenant("unknown")
    api.index(key, "policy.md", POLICY)
    body = api.chat(key, "What is the airspeed velocity of an unladen swallow?").json()
    assert "could not find" in body["content"]


def test_status_reports_every_dependency(api: Api) -> None:
    response = api.http.get("/v1/status")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    for dependency in ("nats", "redis", "mongo", "index"):
        assert body["dependencies"][dependency]["ok"] is True, dependency
    assert set(body["services"]) == {"chat", "ingest", "metering", "webhooks"}


def test_openapi_schema_is_served(api: Api) -> None:
    schema = api.http.get("/docs/openapi.json").json()
    assert "/v1/chat" in schema["paths"]
    assert "/v1/files" in schema["paths"]
    assert "post" in schema["paths"]["/v1/messages/{message_id}/feedback"]
    assert "get" in schema["paths"]["/v1/feedback"]
