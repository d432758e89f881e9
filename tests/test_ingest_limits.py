"""What one app's files may cost ingest (issue 15, findings 7 and 8): text and chunks per file,
chunks per app per hour, turns between apps, and file listings that hold every file.

The caps and the quota run on a stack of their own with small limits (and the hashing embedder,
so reaching them is cheap); packing and fairness on the suite's stack, with its defaults.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docx
import pytest
from nats.aio.msg import Msg

from obdal.servers import free_port, nats_server
from obdal_common import subjects
from obdal_common.messaging import close, connect, ensure_topology, key_value
from obdal_common.schemas import FileStatus, IngestJob
from obdal_ingest.jobs import FairWindow
from obdal_ingest.statuses import FileStatusStore
from tests import documents
from tests.api import Api
from tests.conftest import BIN, Servers, own_bus, start_process, wait_http

MAX_CHARS = 20_000
MAX_CHUNKS = 40
CHUNKS_PER_HOUR = 100


def sections(count: int, *, tag: str) -> bytes:
    """Markdown of ``count`` sections of ~64 tokens each: one chunk per section."""
    return "".join(f"## {tag} topic {n}\n\n{documents.FILLER * 4}\n\n" for n in range(count)).encode()


@pytest.fixture(scope="module")
def limited(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """``obdal up`` on a bus of its own, with small per-file caps and a small hourly quota."""
    base = tmp_path_factory.mktemp("limits")
    with own_bus(base) as bus:
        port = free_port()
        env = bus.env(
            port=port,
            admin_token="limits-admin",
            OBDAL_MONGO_URL=servers.mongo.url,
            OBDAL_MONGO_DB="limits",
            OBDAL_EMBED_MODEL="obdal/hashing-384",
            OBDAL_MAX_FILE_CHARS=str(MAX_CHARS),
            OBDAL_MAX_FILE_CHUNKS=str(MAX_CHUNKS),
            OBDAL_APP_CHUNKS_PER_HOUR=str(CHUNKS_PER_HOUR),
        )
        process = start_process([str(BIN / "obdal"), "up"], env, base / "up.log")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/v1/status", process)
            yield Api(url, "limits-admin")
        finally:
            assert process.stop() == 0, process.log()[-4000:]


def outcome(api: Api, key: str, filename: str, content: bytes) -> dict[str, Any]:
    """Upload and wait for the outcome: the status record, ready or failed."""
    response = api.upload(key, filename, content, wait="true")
    assert response.status_code in (200, 422), response.text
    body: dict[str, Any] = response.json()
    return body if response.status_code == 200 else dict(body["file"])


def test_files_over_the_caps_fail_with_the_reason_before_any_embedding(limited: Api) -> None:
    _, key = limited.new_tenant("caps")
    text = outcome(limited, key, "long.txt", b"Refunds take five business days. " * 800)
    assert (text["status"], text["error_code"], text["chunks"]) == ("failed", "too_much_text", 0)
    assert "OBDAL_MAX_FILE_CHARS" in text["error"]
    assert f"{MAX_CHARS:,} characters" in text["error"]
    assert text["progress"] == 0  # refused while parsing, before the first chunk was embedded
    # A Word file stops being read at the limit.
    word = documents.word(title="Manual", sections={"Manual": [documents.FILLER * 30] * 10})
    assert outcome(limited, key, "manual.docx", word)["error_code"] == "too_much_text"
    # Under the text limit, but more chunks than a file may make.
    many = outcome(limited, key, "many.md", sections(MAX_CHUNKS + 10, tag="many"))
    assert (many["status"], many["error_code"], many["progress"]) == ("failed", "too_many_chunks", 0)
    assert f"become {MAX_CHUNKS + 10} chunks" in many["error"]
    assert "OBDAL_MAX_FILE_CHUNKS" in many["error"]
    # The worker carries on; a failed upload's reason is also the 422's message.
    response = limited.upload(key, "long-again.txt", b"Exchanges take ten business days. " * 800, wait="true")
    assert response.status_code == 422
    assert "OBDAL_MAX_FILE_CHARS" in response.json()["error"]["message"]
    assert outcome(limited, key, "fits.md", sections(MAX_CHUNKS, tag="fits"))["chunks"] == MAX_CHUNKS


def test_an_apps_hourly_quota_fails_files_with_when_to_retry(limited: Api) -> None:
    _, key = limited.new_tenant("busy")
    _, other = limited.new_tenant("quiet")
    for n in range(2):
        assert outcome(limited, key, f"part{n}.md", sections(35, tag=f"part{n}"))["chunks"] == 35
    over = outcome(limited, key, "part2.md", sections(35, tag="part2"))
    assert (over["status"], over["error_code"], over["chunks"]) == ("failed", "ingest_quota_exceeded", 0)
    assert "became 70 chunks in the last hour" in over["error"]
    assert f"{CHUNKS_PER_HOUR:,} chunks per hour" in over["error"]
    # The first charge leaves the rolling hour in 59 to 60 minutes.
    retry = datetime.now(UTC) + timedelta(minutes=59)
    assert re.search(r"upload it again after \d\d:\d\d UTC$", over["error"]), over["error"]
    assert over["error"].endswith((f"{retry:%H:%M} UTC", f"{retry + timedelta(minutes=1):%H:%M} UTC"))
    # What is left of the hour still serves smaller files; other apps have hours of their own.
    assert outcome(limited, key, "note.md", b"# Note\n\nA short note.\n")["status"] == "ready"
    assert outcome(limited, other, "part0.md", sections(35, tag="quiet"))["chunks"] == 35


def _headed_lines(count: int) -> bytes:
    """A Word file of ``count`` headings, each over one short line: what made 11,900 chunks."""
    document = docx.Document()
    for n in range(count):
        document.add_heading(f"Step {n}", level=2)
        document.add_paragraph(f"Press key {n}.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_a_file_of_tiny_sections_is_packed_into_few_chunks(api: Api) -> None:
    _, key = api.new_tenant("tiny-sections")
    data = _headed_lines(1500)
    assert len(data) < 64 * 1024
    status = outcome(api, key, "steps.docx", data)
    assert status["status"] == "ready", status
    assert status["chunks"] <= 200  # 1,500 when every section had a chunk of its own


def _at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def test_one_apps_backlog_does_not_hold_back_another_apps_first_file(api: Api) -> None:
    _, busy = api.new_tenant("backlog")
    _, newcomer = api.new_tenant("newcomer")
    files = [(f"guide{n}.md", sections(4, tag=f"guide{n}")) for n in range(20)]
    with ThreadPoolExecutor(8) as pool:
        accepted = list(pool.map(lambda f: api.upload(busy, *f), files))
    assert all(r.status_code == 202 for r in accepted), [r.text for r in accepted]
    mine = api.upload(newcomer, "hello.md", b"# Hello\n\nOur shop opens at nine.\n")
    assert mine.status_code == 202, mine.text
    first = api.wait_file(newcomer, mine.json()["file_id"], timeout=120)
    backlog = [api.wait_file(busy, r.json()["file_id"], timeout=240) for r in accepted]
    assert first["status"] == "ready"
    assert all(s["status"] == "ready" for s in backlog)
    # Files of the backlog that had not started when the newcomer's arrived: at most one of them
    # (the one taken while it was being uploaded) goes before it.
    waiting = [s for s in backlog if _at(s["started_at"]) > _at(first["created_at"])]
    assert len(waiting) >= 5, "the backlog was gone before the newcomer's file arrived"
    ahead = [s for s in waiting if _at(s["finished_at"]) < _at(first["finished_at"])]
    assert len(ahead) <= 1, (first, ahead)


def _held(app_id: str, n: int, *, delivered: int = 1) -> tuple[IngestJob, Msg]:
    job = IngestJob(
        app_id=app_id,
        file_id=f"file_{app_id}{n:04d}",
        filename="a.md",
        content_type="text/markdown",
        size=1,
        sha256="0",
        object_name=f"{app_id}/upload_{n}",
        version=1,
    )
    # What JetStream puts in a delivery's reply subject: stream, consumer, deliveries, sequences, …
    reply = f"$JS.ACK.{subjects.INGEST_STREAM}.{subjects.INGEST_CONSUMER}.{delivered}.{n}.{n}.0.0"
    return job, Msg(_client=None, subject=subjects.INGEST_JOB, reply=reply)  # type: ignore[arg-type]


def test_the_window_takes_apps_in_turns_and_last_deliveries_first() -> None:
    window = FairWindow(max_deliver=5)
    for n in range(4):
        window.add(*_held("appA", n))
    first = window.take()
    window.add(*_held("appB", 0))  # arrives while appA's first job runs
    window.add(*_held("appA", 9, delivered=5))  # its last delivery: held once more, it would be lost
    order = [first]
    while (taken := window.take()) is not None:
        order.append(taken)
    assert [(held[0].app_id, held[0].file_id[-4:]) for held in order if held is not None] == [
        ("appA", "0000"),
        ("appA", "0009"),
        ("appB", "0000"),
        ("appA", "0001"),
        ("appA", "0002"),
        ("appA", "0003"),
    ]
    assert len(window) == 0


async def test_listing_holds_every_file_while_statuses_change(tmp_path: Path) -> None:
    server = nats_server(tmp_path).start()
    nc = await connect(server.url, name="listing")
    try:
        js = nc.jetstream()
        await ensure_topology(js)
        store = FileStatusStore(await key_value(js, subjects.KV_FILES), js=js)
        now = datetime.now(UTC)
        ids = [f"file_listing{n:08d}" for n in range(10)]
        for file_id in ids:
            await store.put(
                FileStatus(
                    file_id=file_id,
                    app_id="app_listing000000000",
                    filename=f"{file_id}.md",
                    status="queued",
                    size=1,
                    content_type="text/markdown",
                    sha256=file_id,
                    created_at=now,
                    updated_at=now,
                )
            )
        stop = asyncio.Event()

        async def progress() -> None:  # what a worker does to statuses while files ingest
            n = 0
            while not stop.is_set():
                await store.update("app_listing000000000", ids[n % 10], "processing", progress=n % 100)
                n += 1

        updates = asyncio.create_task(progress())
        try:
            listed = [await store.list("app_listing000000000") for _ in range(200)]
        finally:
            stop.set()
            await updates
        short = [len(files) for files in listed if len(files) != len(ids)]
        assert not short, f"{len(short)} of 200 listings were missing files: {short[:10]}"
    finally:
        await close(nc)
        server.stop()
