"""The public contract, literally: the product page's three requests replayed byte for byte, and the
README's curl walk-through pasted whole, against the running stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.api import Api, parse_sse
from tests.conftest import BIN, ROOT, Stack, clean_env

# As the product page prints them; only "your_api_key" is replaced by a real key.
CHAT_BODY = """{
"message": "Summarize the outage playbook",
"api_key": "your_api_key",
"session_id": "sess_9Rna21",
"stream": true
}"""
USAGE_REQUEST = "/v1/usage?api_key=your_api_key&start_date=2024-01-01"
SESSIONS_REQUEST = "/v1/sessions?api_key=your_api_key&include_all=true"
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")

PLAYBOOK = """# Outage playbook

This playbook is what the on-call engineer follows when the Acme shop or its API is down
or badly degraded.

## Declare the incident

Declare an incident as soon as checkout errors stay above 5% for five minutes or the
status checks fail from two regions. The on-call engineer becomes the incident commander
until they hand the role over.

## First fifteen minutes

Open the #incident channel and start the incident log with the time the outage began.
Post a first notice on status.acme.example within 15 minutes, even if the cause is unknown.
Roll back the last deployment if it went out in the previous two hours.

## Communication

Update the status page every 30 minutes until the incident is resolved. Customer support
answers tickets with the status page link and never promises a time to recovery.

## Escalation

Page the database team when replication lag exceeds two minutes. Call the head of
engineering for any outage longer than one hour.

## After the incident

Write the postmortem within five business days. It lists the timeline, the root cause and
the follow-up actions, each with an owner.
"""


def _until(what: str, fetch: Any, done: Any, *, timeout: float = 30) -> Any:
    """``fetch()`` until ``done(result)`` (metering stores usage and turns asynchronously)."""
    deadline = time.monotonic() + timeout
    while not done(result := fetch()):
        assert time.monotonic() < deadline, f"{what} not seen in {timeout} s: {result}"
        time.sleep(0.1)
    return result


def test_the_product_pages_three_requests_work_as_printed(api: Api) -> None:
    _, key = api.new_tenant("product page", kind="secret")
    uploaded = api.upload(key, "outage-playbook.md", PLAYBOOK.encode(), wait="true")
    assert uploaded.status_code == 200, uploaded.text
    playbook = uploaded.json()
    assert playbook["status"] == "ready"

    # POST /v1/chat, the body exactly as printed.
    with api.http.stream(
        "POST",
        "/v1/chat",
        content=CHAT_BODY.replace("your_api_key", key).encode(),
        headers={"Content-Type": "application/json"},
    ) as response:
        lines = list(response.iter_lines())
    assert response.status_code == 200, lines
    assert response.headers["content-type"].startswith("text/event-stream")
    events, _ = parse_sse(lines)
    names = [e.event for e in events]
    assert names[0] == "message", names
    assert names[-1] == "end", names
    messages = [e.data for e in events if e.event == "message"]
    assert all(set(m) == {"content"} and isinstance(m["content"], str) for m in messages)
    answer = "".join(m["content"] for m in messages)
    # The offline default summarizes: the playbook's key sentences, in its order, cited.
    assert answer.startswith("Here is an overview of outage-playbook.md"), answer
    assert "Declare an incident as soon as checkout errors" in answer
    assert "[1]" in answer
    end = events[-1].data
    assert end["session_id"] == "sess_9Rna21"
    # Grounded in the playbook, the app's only document.
    sources = [e.data for e in events if e.event == "sources"]
    assert sources
    assert {s["file_id"] for s in sources[0]["sources"]} == {playbook["file_id"]}

    # GET /v1/usage?api_key=…&start_date=2024-01-01: from then through today.
    def usage() -> dict[str, Any]:
        response = api.http.get(USAGE_REQUEST.replace("your_api_key", key))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    totals = _until("the answer's usage", usage, lambda body: body["total_requests"] >= 1)
    assert type(totals["total_requests"]) is int
    assert totals["total_requests"] == 1
    assert type(totals["total_tokens"]) is int
    assert totals["total_tokens"] == end["usage"]["total_tokens"] > 0
    assert type(totals["total_cost"]) is float
    assert totals["total_cost"] == end["usage"]["cost"]

    # GET /v1/sessions?api_key=…&include_all=true: the array is "sessions".
    def sessions() -> dict[str, Any]:
        response = api.http.get(SESSIONS_REQUEST.replace("your_api_key", key))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    listed = _until("the session", sessions, lambda body: body["sessions"])
    assert set(listed) == {"sessions", "next_cursor"}
    assert listed["next_cursor"] is None
    [session] = listed["sessions"]
    assert session["session_id"] == "sess_9Rna21"
    assert ISO_UTC.match(session["last_at"]), session["last_at"]
    assert type(session["total_tokens"]) is int
    assert session["total_tokens"] == end["usage"]["total_tokens"]
    assert session["preview"] == "Summarize the outage playbook"


def _walk_through() -> str:
    """The README's curl block, as a reader would paste it."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Walk-through with curl", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object printed, also when curl glued one answer to the next (no newline)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    at = 0
    while (at := text.find("{", at)) != -1:
        try:
            value, at = decoder.raw_decode(text, at)
        except ValueError:
            at += 1
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def test_the_readme_walk_through_works_pasted_whole(stack: Stack, tmp_path: Path) -> None:
    # Where `make run` would have been started: its admin token under .obdal/.
    (tmp_path / ".obdal").mkdir()
    (tmp_path / ".obdal" / "admin_token").write_text(stack.admin_token)
    script = _walk_through()
    assert "export OBDAL=http://127.0.0.1:8080\n" in script
    env = clean_env(PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run(
        ["bash", "-c", script.replace("http://127.0.0.1:8080", stack.url)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert not run.stderr, run.stderr
    printed = _json_objects(run.stdout)
    [file] = [o for o in printed if "chunks" in o]
    assert (file["status"], file["filename"]) == ("ready", "returns.md")
    streamed = "".join(o["content"] for o in printed if set(o) == {"content"})
    assert "45 days" in streamed, run.stdout
    [follow_up] = [o for o in printed if "content" in o and "session_id" in o]
    assert "original payment method" in follow_up["content"], follow_up
    [usage] = [o for o in printed if "total_requests" in o]
    assert usage["start_date"] == "2024-01-01"
    [sessions] = [o for o in printed if "sessions" in o]
    assert set(sessions) == {"sessions", "next_cursor"}
