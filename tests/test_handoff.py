"""Handing a conversation to a person through the running stack's public API (docs/handoff.md):
the request, the webhooks, the person's replies on the session's event stream (live, and replayed
after a reconnect), the assistant keeping quiet, resolution, usage and analytics, refusals, erasure."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx

from tests.api import Api, SseEvent, parse_sse, poll
from tests.test_end_to_end import POLICY
from tests.test_webhooks import add_endpoint
from tests.webhook_receiver import Receiver

ORIGIN = {"Origin": "https://help.handoff.example.com"}
UNKNOWN = "What is the boiling point of tungsten?"


class EventStream:
    """``GET /v1/sessions/{id}/events`` read on a thread, its events handed over as they come."""

    def __init__(self, api: Api, key: str, session_id: str, *, last_event_id: str | None = None) -> None:
        headers = {**ORIGIN, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        self._request = api.http.build_request(
            "GET", f"/v1/sessions/{session_id}/events", params={"api_key": key}, headers=headers
        )
        self._client = api.http
        self._events: queue.Queue[SseEvent | None] = queue.Queue()
        self.ids: list[str] = []
        self.status = 0
        self._response: httpx.Response | None = None
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        response = self._client.send(self._request, stream=True)
        self._response, self.status = response, response.status_code
        self._opened.set()
        block: list[str] = []
        try:
            for line in response.iter_lines():
                if line:
                    block.append(line)
                    continue
                for event in parse_sse(block)[0]:  # one event a block (or none: a ping)
                    if event.id:
                        self.ids.append(event.id)
                    self._events.put(event)
                block = []
        except httpx.HTTPError:
            pass  # closed by the test
        finally:
            self._events.put(None)

    def __enter__(self) -> EventStream:
        self._thread.start()
        assert self._opened.wait(10), "the event stream did not open"
        return self

    def __exit__(self, *_: Any) -> None:
        if self._response is not None:
            self._response.close()
        self._thread.join(5)

    def next(self, *, timeout: float) -> SseEvent:
        event = self._events.get(timeout=timeout)
        assert event is not None, "the event stream ended"
        return event


@contextmanager
def handoff_app(api: Api, name: str, **settings: Any) -> Iterator[tuple[str, str, str]]:
    """An app with handoff turned on: its id, a secret key and the widget's publishable key."""
    app_id, key = api.new_tenant(name)
    api.index(key, "policy.md", POLICY)
    response = api.admin.put(f"/v1/admin/apps/{app_id}/handoff", json={"enabled": True, **settings})
    assert response.status_code == 200, response.text
    widget = api.create_key(app_id, kind="publishable", allowed_origins=[ORIGIN["Origin"]])["key"]
    yield app_id, key, widget


def headers(api: Api, key: str) -> dict[str, str]:
    """A publishable key's requests come from the widget's page; a secret key's from a server."""
    return {**api.auth(key), **(ORIGIN if key.startswith("obd_pk_") else {})}


def hand_off(api: Api, key: str, session_id: str, **body: Any) -> httpx.Response:
    return api.http.post(f"/v1/sessions/{session_id}/handoff", headers=headers(api, key), json=body)


def reply(api: Api, key: str, session_id: str, content: str, **body: Any) -> httpx.Response:
    return api.http.post(
        f"/v1/sessions/{session_id}/messages",
        headers=headers(api, key),
        json={"role": "agent", "content": content, **body},
    )


def session(api: Api, key: str, session_id: str) -> dict[str, Any]:
    response = api.http.get(f"/v1/sessions/{session_id}", headers=api.auth(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_declined_answer_reaches_a_person_and_their_reply_the_customer(api: Api) -> None:
    with (
        handoff_app(api, "handoff-journey", ask_contact="optional") as (_, key, widget),
        Receiver() as receiver,
    ):
        add_endpoint(api, key, receiver)
        answer = api.http.post(
            "/v1/chat", headers={**api.auth(widget), **ORIGIN}, json={"message": UNKNOWN}
        ).json()
        assert answer["answered"] is False
        session_id = answer["session_id"]

        asked = hand_off(
            api,
            widget,
            session_id,
            reason="The answer did not help",
            contact={"email": " ana@example.com ", "name": "Ana"},
        )
        assert asked.status_code == 200, asked.text
        handoff = asked.json()
        assert handoff["handoff_id"].startswith("hof_")
        assert (handoff["status"], handoff["session_id"], handoff["resolved_at"]) == (
            "requested",
            session_id,
            None,
        )
        assert handoff["contact"] == {"email": "ana@example.com", "name": "Ana"}
        # Asking again answers the open handoff; nothing is sent twice.
        again = hand_off(api, widget, session_id)
        assert again.json()["handoff_id"] == handoff["handoff_id"]

        [requested] = receiver.wait("handoff.requested")
        assert requested.verified
        assert requested.data["handoff_id"] == handoff["handoff_id"]
        assert requested.data["contact"] == {"email": "ana@example.com", "name": "Ana"}
        assert requested.data["reason"] == "The answer did not help"
        assert [(m["role"], m["content"]) for m in requested.data["transcript"]] == [
            ("user", UNKNOWN),
            ("assistant", answer["content"]),
        ]

        with EventStream(api, widget, session_id) as stream:
            assert stream.status == 200
            first = stream.next(timeout=5)
            assert (first.event, first.data["status"]) == ("handoff", "requested")
            sent_at = time.monotonic()
            posted = reply(api, key, session_id, "Hi Ana, it is 5,555 °C.", name="Sam")
            assert posted.status_code == 201, posted.text
            live = stream.next(timeout=2)
            took = time.monotonic() - sent_at
            assert live.event == "message"
            assert (live.data["content"], live.data["name"], live.data["role"]) == (
                "Hi Ana, it is 5,555 °C.",
                "Sam",
                "agent",
            )
            assert live.data["message_id"] == posted.json()["message_id"] == stream.ids[-1]
            assert took < 2

            # The assistant keeps quiet: the question is kept and told, no model runs.
            quiet = api.http.post(
                "/v1/chat",
                headers={**api.auth(widget), **ORIGIN},
                json={"message": "Thanks! And for iron?", "session_id": session_id, "stream": True},
            )
            assert quiet.status_code == 200
            assert "event: message" not in quiet.text
            end = json.loads(quiet.text.split("event: end\r\ndata: ")[1].split("\r\n")[0])
            assert (end["answered"], end["handed_off"], end["usage"]["total_tokens"]) == (False, True, 0)
            received = receiver.wait("message.received")[0]
            assert received.data["question"] == "Thanks! And for iron?"
            assert not receiver.of_type("message.answered")

            resolved = api.http.post(f"/v1/sessions/{session_id}/handoff/resolve", headers=api.auth(key))
            assert resolved.status_code == 200, resolved.text
            assert resolved.json()["status"] == "resolved"
            changed = stream.next(timeout=5)
            assert (changed.event, changed.data["status"]) == ("handoff", "resolved")
        assert receiver.wait("handoff.resolved")[0].data["handoff_id"] == handoff["handoff_id"]

        # The assistant answers again.
        back = api.http.post(
            "/v1/chat",
            headers={**api.auth(widget), **ORIGIN},
            json={"message": "Which courier do you ship with?", "session_id": session_id},
        ).json()
        assert back["session_id"] == session_id
        assert back["content"]
        assert "handed_off" not in back

        shown = poll(
            lambda: session(api, key, session_id),
            lambda s: len(s["messages"]) == 7,
            what="every message of the session",
        )
        assert [m["role"] for m in shown["messages"]] == [
            "user",
            "assistant",
            "agent",
            "user",
            "assistant",
            "user",
            "assistant",
        ]
        assert shown["messages"][2]["name"] == "Sam"
        assert shown["messages"][4]["outcome"] == "handed_off"
        assert shown["handoff"]["status"] == "resolved"
        assert shown["handoff"]["contact"]["email"] == "ana@example.com"
        listed = api.sessions(key)
        assert [s["handoff_status"] for s in listed if s["session_id"] == session_id] == ["resolved"]

        usage = api.usage(key)
        assert (usage["handoffs"], usage["agent_messages"]) == (1, 1)
        figures = poll(
            lambda: api.http.get("/v1/analytics", headers=api.auth(key)).json()["totals"],
            lambda t: t["handoffs"] == 1 and t["handed_off"] == 2,
            what="the handoff in the analytics",
        )
        assert figures["declined"] == 1


def test_a_reconnected_stream_gets_only_the_replies_it_missed(api: Api) -> None:
    with handoff_app(api, "handoff-replay") as (_, key, widget):
        session_id = api.chat(key, UNKNOWN).json()["session_id"]
        assert hand_off(api, key, session_id).status_code == 200
        first = reply(api, key, session_id, "One").json()
        second = reply(api, key, session_id, "Two").json()
        with EventStream(api, widget, session_id) as everything:
            assert everything.next(timeout=5).event == "handoff"
            assert [everything.next(timeout=5).data["content"] for _ in range(2)] == ["One", "Two"]
        with EventStream(api, widget, session_id, last_event_id=first["message_id"]) as missed:
            assert missed.next(timeout=5).data["status"] == "requested"
            only = missed.next(timeout=5)
            assert only.data["message_id"] == second["message_id"]
            third = reply(api, key, session_id, "Three").json()
            assert missed.next(timeout=2).data["message_id"] == third["message_id"]
        bad = api.http.get(
            f"/v1/sessions/{session_id}/events", params={"api_key": widget, "after": "nope"}, headers=ORIGIN
        )
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_after")


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_what_handoff_refuses(api: Api) -> None:
    app_id, key = api.new_tenant("handoff-off")
    api.index(key, "policy.md", POLICY)
    widget = api.create_key(app_id, kind="publishable", allowed_origins=[ORIGIN["Origin"]])["key"]
    session_id = api.chat(key, UNKNOWN).json()["session_id"]
    # Off by default: the widget may not, the app's own servers may.
    assert error(hand_off(api, widget, session_id)) == (403, "handoff_off")
    assert api.admin.get(f"/v1/admin/apps/{app_id}/handoff").json() == {
        "enabled": False,
        "ask_contact": "optional",
        "notify_email": None,
    }
    bad_address = api.admin.put(
        f"/v1/admin/apps/{app_id}/handoff", json={"enabled": True, "notify_email": "nope"}
    )
    assert error(bad_address) == (422, "invalid_notify_email")
    required = api.admin.put(
        f"/v1/admin/apps/{app_id}/handoff", json={"enabled": True, "ask_contact": "required"}
    )
    assert required.status_code == 200, required.text
    config = api.http.get("/v1/widget/config", headers={**api.auth(widget), **ORIGIN}).json()
    assert config["handoff"] == {"enabled": True, "ask_contact": "required"}
    assert error(hand_off(api, widget, session_id)) == (422, "contact_required")
    assert error(hand_off(api, widget, session_id, contact={"email": "not an address"})) == (
        422,
        "invalid_contact",
    )
    assert error(hand_off(api, widget, session_id, surprise=1)) == (400, "invalid_request")

    # Another app's session, and ids that are no session, are not found.
    _, other = api.new_tenant("handoff-other")
    assert error(hand_off(api, other, session_id)) == (404, "session_not_found")
    assert error(hand_off(api, key, "sess_doesnotexist")) == (404, "session_not_found")
    assert error(hand_off(api, key, "not-a-session")) == (404, "session_not_found")
    assert error(reply(api, other, session_id, "hi")) == (404, "session_not_found")

    # Only the app's servers reply and resolve, and only as a person.
    assert error(reply(api, widget, session_id, "hi")) == (403, "insufficient_scope")
    assert error(reply(api, key, session_id, "hi", role="assistant")) == (422, "invalid_role")
    assert error(reply(api, key, session_id, "")) == (400, "invalid_request")
    resolve = api.http.post(f"/v1/sessions/{session_id}/handoff/resolve", headers=api.auth(key))
    assert error(resolve) == (409, "handoff_not_open")
    assert hand_off(api, key, session_id).status_code == 200  # a secret key needs no contact
    assert error(
        api.http.post(f"/v1/sessions/{session_id}/handoff/resolve", headers={**api.auth(widget), **ORIGIN})
    ) == (403, "insufficient_scope")


def test_erasing_a_session_removes_its_handoff_and_replies(api: Api) -> None:
    with handoff_app(api, "handoff-erase") as (_, key, widget):
        session_id = api.chat(key, UNKNOWN, user="bea").json()["session_id"]
        assert hand_off(api, widget, session_id, contact={"email": "bea@example.com"}).status_code == 200
        assert reply(api, key, session_id, "We will call you.").status_code == 201
        erased = api.http.delete(f"/v1/sessions/{session_id}", headers=api.auth(key))
        assert erased.status_code == 200, erased.text
        assert api.http.get(f"/v1/sessions/{session_id}", headers=api.auth(key)).status_code == 404
        events = api.http.get(f"/v1/sessions/{session_id}/events", params={"api_key": widget}, headers=ORIGIN)
        assert error(events) == (404, "session_not_found")
        # The session waits for nobody: its id used again is answered by the assistant.
        fresh = api.chat(key, "Which courier do you ship with?", session_id=session_id).json()
        assert fresh["answered"] is True
        assert "handed_off" not in fresh
        # Usage keeps the count, as it keeps every request (no content).
        assert api.usage(key)["handoffs"] == 1


def test_a_session_holds_a_few_event_streams_not_thousands(api: Api) -> None:
    with handoff_app(api, "handoff-streams") as (_, key, widget):
        session_id = api.chat(key, UNKNOWN).json()["session_id"]
        assert hand_off(api, key, session_id).status_code == 200
        url = f"/v1/sessions/{session_id}/events"

        def opens() -> int:
            with api.http.stream("GET", url, params={"api_key": widget}, headers=ORIGIN) as response:
                if response.status_code == 429:
                    response.read()
                    assert response.json()["error"]["code"] == "too_many_streams"
                    assert response.headers["retry-after"] == "5"
                return response.status_code

        with ExitStack() as tabs:
            streams = [tabs.enter_context(EventStream(api, widget, session_id)) for _ in range(5)]
            assert [s.status for s in streams] == [200] * 5
            assert all(s.next(timeout=5).event == "handoff" for s in streams)
            assert opens() == 429
        # Closed tabs give their places back (at the latest when the server's next ping fails).
        assert poll(opens, lambda status: status != 429, timeout=30, what="a place for a new stream") == 200
