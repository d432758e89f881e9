"""A thin client of the public HTTP API, as a user's code would call it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def poll(fetch: Callable[[], T], done: Callable[[T], bool], *, timeout: float = 30, what: str = "") -> T:
    """``fetch()`` until ``done`` holds of it (what the API shows trails a change: metering's
    figures by a few seconds, chat's mirrors of curated answers by moments)."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result):
            return result
        assert time.monotonic() < deadline, f"{what or 'not reached'} in {timeout} s: {result}"
        time.sleep(0.2)


@dataclass
class SseEvent:
    event: str
    data: Any
    id: str | None = None


@dataclass
class SseResponse:
    status: int
    headers: httpx.Headers
    events: list[SseEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return [e.event for e in self.events]

    def text(self) -> str:
        return "".join(e.data["content"] for e in self.events if e.event == "message")

    def one(self, name: str) -> Any:
        found = [e.data for e in self.events if e.event == name]
        assert len(found) == 1, f"expected one {name!r} event, got {self.names()}"
        return found[0]


def parse_sse(lines: list[str]) -> tuple[list[SseEvent], list[str]]:
    """Split an SSE body into events (``event:`` + ``data:``, and ``id:`` if given) and ``:`` comments."""
    events: list[SseEvent] = []
    comments: list[str] = []
    name, data, event_id = "message", list[str](), None
    for line in [*lines, ""]:
        if not line:
            if data:
                events.append(SseEvent(name, json.loads("\n".join(data)), event_id))
            name, data, event_id = "message", [], None
        elif line.startswith(":"):
            comments.append(line[1:].strip())
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line.startswith("id:"):
            event_id = line[3:].strip()
    return events, comments


class Api:
    def __init__(self, url: str, admin_token: str) -> None:
        self.url = url
        self.admin = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30
        )
        self.http = httpx.Client(base_url=url, timeout=30)

    def create_app(self, name: str = "acme") -> str:
        response = self.admin.post("/v1/admin/apps", json={"name": name})
        assert response.status_code == 201, response.text
        return str(response.json()["app_id"])

    def create_key(self, app_id: str, **body: Any) -> dict[str, Any]:
        body.setdefault("name", "test key")
        response = self.admin.post(f"/v1/admin/apps/{app_id}/keys", json=body)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    def new_tenant(self, name: str = "acme", **key: Any) -> tuple[str, str]:
        """A fresh app and a key of it: ``(app_id, key)``."""
        app_id = self.create_app(name)
        return app_id, str(self.create_key(app_id, **key)["key"])

    @staticmethod
    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def upload(self, key: str, filename: str, content: bytes, **params: str) -> httpx.Response:
        """``POST /v1/files``; ``params`` go in the query (``wait="true"``)."""
        return self.http.post(
            "/v1/files",
            headers=self.auth(key),
            params=params,
            files={"file": (filename, content)},
            timeout=150,  # longer than the longest wait an upload may ask for
        )

    def wait_file(self, key: str, file_id: str, *, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body: dict[str, Any] = self.http.get(f"/v1/files/{file_id}", headers=self.auth(key)).json()
            if body.get("status") in ("ready", "failed"):
                return body
            time.sleep(0.1)
        raise AssertionError(f"file {file_id} not processed in {timeout} s")

    def index(self, key: str, filename: str, text: str) -> str:
        """Upload a document and wait until it is searchable; its file id."""
        response = self.upload(key, filename, text.encode())
        assert response.status_code == 202, response.text
        file_id = str(response.json()["file_id"])
        assert self.wait_file(key, file_id)["status"] == "ready"
        return file_id

    def chat(self, key: str, message: str, **body: Any) -> httpx.Response:
        return self.http.post("/v1/chat", headers=self.auth(key), json={"message": message, **body})

    def chat_stream(
        self, key: str, message: str, *, headers: dict[str, str] | None = None, **body: Any
    ) -> SseResponse:
        with self.http.stream(
            "POST",
            "/v1/chat",
            headers={**self.auth(key), **(headers or {})},
            json={"message": message, "stream": True, **body},
        ) as response:
            lines = list(response.iter_lines())
        result = SseResponse(status=response.status_code, headers=response.headers)
        result.events, result.comments = parse_sse(lines)
        return result

    def usage(self, key: str, **params: str) -> dict[str, Any]:
        response = self.http.get("/v1/usage", headers=self.auth(key), params=params)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def wait_usage(self, key: str, requests: int, *, timeout: float = 30) -> dict[str, Any]:
        """Usage once it counts ``requests`` requests (metering is asynchronous)."""
        deadline = time.monotonic() + timeout
        body = self.usage(key)
        while body["total_requests"] < requests and time.monotonic() < deadline:
            time.sleep(0.1)
            body = self.usage(key)
        return body

    def sessions(self, key: str, **params: Any) -> list[dict[str, Any]]:
        """Every session of the key's app that ``GET /v1/sessions`` lists, following its cursors."""
        items: list[dict[str, Any]] = []
        cursor: dict[str, str] = {}
        while True:
            response = self.http.get("/v1/sessions", headers=self.auth(key), params={**params, **cursor})
            assert response.status_code == 200, response.text
            page = response.json()
            items += page["sessions"]
            if page["next_cursor"] is None:
                return items
            cursor = {"cursor": page["next_cursor"]}

    def wait_sessions(self, key: str, *, user: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """The end user's sessions once there are ``count`` of them (listed as metering stores turns)."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.get(
                "/v1/sessions", headers=self.auth(key), params={"user": user, "include_all": "true"}
            )
            assert response.status_code == 200, response.text
            found: list[dict[str, Any]] = response.json()["sessions"]
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"{user}: {count} sessions not in {timeout} s, {found}"
            time.sleep(0.1)

    def wait_session(
        self, key: str, session_id: str, *, messages: int, timeout: float = 30
    ) -> dict[str, Any]:
        """A session once it holds ``messages`` messages (turns are stored apart from usage)."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.get(f"/v1/sessions/{session_id}", headers=self.auth(key))
            assert response.status_code in (200, 404), response.text
            session: dict[str, Any] = response.json()
            if response.status_code == 200 and len(session["messages"]) >= messages:
                return session
            assert time.monotonic() < deadline, f"{session_id}: {messages} messages not in {timeout} s"
            time.sleep(0.1)
