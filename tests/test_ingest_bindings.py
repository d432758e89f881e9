"""Ingest as the one owner of a file's lifecycle: bytes, status and passages, reached only
through :class:`~obdal_common.contract.Ingest`.

The handlers run on the in-memory bus (the same encoding and error replies as over NATS)
against a real nats-server for what they own (KV, Object Store, the job stream); the last
tests go over NATS itself: a wait that NATS drops, and a gateway without ingest.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from obdal.servers import ManagedServer, nats_server
from obdal_common import subjects
from obdal_common.contract import Bindings, Bus, Ingest, MemoryBus, NatsBus
from obdal_common.contract.ingest import stage
from obdal_common.errors import BadRequest, DependencyUnavailable, NotFound
from obdal_common.health import nats_check, status_handler
from obdal_common.messaging import close, connect
from obdal_common.outbound import OutboundClient, OutboundPolicy
from obdal_common.schemas import (
    FileListQuery,
    FileLookup,
    FileOutcomeQuery,
    FileReplace,
    FileStatus,
    FileUpload,
    IngestDelete,
    IngestDeleteApp,
    IngestJob,
    StatusQuery,
    decode,
)
from obdal_gateway.routes.files import _while_connected
from obdal_ingest.bindings import ingest_bindings
from obdal_ingest.settings import IngestSettings
from obdal_ingest.statuses import FileStatusStore
from obdal_retrieval import Chunk, HybridIndex, close_indexes
from tests.conftest import LoneGateway
from tests.ingest_parts import ingest_parts

APP = "app_lifecycle0000001"
OTHER = "app_lifecycle0000002"


@dataclass
class Owner:
    """Ingest's side on a nats-server of its own; ``ingest`` is the typed client over ``bus``."""

    server: ManagedServer
    nc: NATS
    js: JetStreamContext
    objects: ObjectStore
    statuses: FileStatusStore
    index: HybridIndex
    bindings: Bindings
    ingest: Ingest

    async def upload(self, content: bytes, filename: str = "hours.md", app_id: str = APP) -> FileUpload:
        """``content`` staged as the gateway stages it, and the upload naming it."""
        return FileUpload(
            app_id=app_id,
            filename=filename,
            content_type="text/markdown",
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            staged=await stage(self.objects, app_id, content),
        )

    async def stored(self, name: str) -> bytes | None:
        try:
            return (await self.objects.get(name)).data
        except ObjectNotFoundError:
            return None

    async def names(self) -> set[str]:
        try:
            return {info.name for info in await self.objects.list(ignore_deletes=True)}
        except NotFoundError:
            return set()


async def serve_owner(server: ManagedServer, nc: NATS, tmp_path: Path, bus: Bus, caller: Bus) -> Owner:
    """Ingest's bindings served on ``bus`` over ``nc``'s NATS, called over ``caller``."""
    client = OutboundClient(OutboundPolicy(), user_agent="obdal-test")
    parts, index = await ingest_parts(nc, tmp_path, client=client, settings=IngestSettings())
    js, objects, statuses = parts.js, parts.objects, parts.statuses
    files, answers, sources = parts.files, parts.answers, parts.sources
    bindings = ingest_bindings(
        files=files,
        answers=answers,
        sources=sources,
        checks={"nats": nats_check(nc), "index": index.status},
    )
    await bindings.serve(bus)
    return Owner(server, nc, js, objects, statuses, index, bindings, Ingest(caller))


@pytest.fixture
async def owner(tmp_path: Path) -> AsyncIterator[Owner]:
    server = nats_server(tmp_path).start()
    nc = await connect(server.url, name="lifecycle-test")
    try:
        bus = MemoryBus()
        serving = await serve_owner(server, nc, tmp_path, bus, bus)
        yield serving
        await serving.bindings.stop()
    finally:
        await close_indexes()
        await close(nc)
        server.stop()


async def queued_jobs(js: JetStreamContext, count: int) -> list[tuple[IngestJob, str]]:
    """The jobs on the work queue (no worker here takes them) with their ``Nats-Msg-Id``."""
    sub = await js.pull_subscribe(subjects.INGEST_JOB, stream=subjects.INGEST_STREAM)
    msgs = await sub.fetch(count, timeout=2)
    await sub.unsubscribe()
    return [(decode(m.data, IngestJob), (m.headers or {}).get("Nats-Msg-Id", "")) for m in msgs]


async def test_bindings_refuse_to_start_without_a_handler_for_every_ingest_rpc() -> None:
    partial = Bindings(Ingest).bind(Ingest.status, status_handler("ingest", {}))
    with pytest.raises(TypeError, match="no handler for upload, replace, get, list, outcome, delete"):
        await partial.serve(MemoryBus())


async def test_an_upload_is_recorded_with_its_staged_bytes_and_queued_once(owner: Owner) -> None:
    status = await owner.ingest.status(StatusQuery())
    assert (status.service, status.ok, set(status.dependencies)) == ("ingest", True, {"nats", "index"})

    upload = await owner.upload(b"# Hours\n\nOpen at nine.")
    accepted = await owner.ingest.upload(upload)
    file = accepted.file
    assert not accepted.duplicate
    assert (file.status, file.version, file.app_id, file.filename) == ("queued", 1, APP, "hours.md")
    assert file.file_id.startswith("file_")
    assert file.object_name == upload.staged  # the claim check's bytes are the file's, not copied
    assert await owner.ingest.get(FileLookup(app_id=APP, file_id=file.file_id)) == file
    assert (await owner.ingest.list(FileListQuery(app_id=APP))).files == [file]
    assert (await owner.ingest.list(FileListQuery(app_id=OTHER))).files == []
    ((job, msg_id),) = await queued_jobs(owner.js, 2)
    assert (job.file_id, job.object_name, job.version, job.sha256) == (
        file.file_id,
        upload.staged,
        1,
        upload.sha256,
    )
    assert msg_id == f"{file.file_id}.v1"


async def test_a_duplicate_upload_deletes_its_staged_bytes(owner: Owner) -> None:
    content = b"# Hours\n\nOpen at nine."
    first = (await owner.ingest.upload(await owner.upload(content))).file
    again = await owner.upload(content, filename="copy.md")
    duplicate = await owner.ingest.upload(again)
    assert duplicate.duplicate
    assert duplicate.file == first
    assert await owner.stored(again.staged) is None
    assert await owner.stored(first.object_name) == content
    # The same bytes in another app are that app's own file.
    assert not (await owner.ingest.upload(await owner.upload(content, app_id=OTHER))).duplicate


async def test_racing_identical_uploads_make_one_file_and_keep_one_copy(owner: Owner) -> None:
    content = b"# Racing\n\nThe Quarrelwick depot closes at six."
    uploads = [await owner.upload(content, filename=f"copy-{n}.md") for n in range(6)]
    answers = await asyncio.gather(*(owner.ingest.upload(u) for u in uploads))
    assert sorted(a.duplicate for a in answers) == [False] + [True] * 5
    assert len({a.file.file_id for a in answers}) == 1
    kept = next(a.file for a in answers if not a.duplicate)
    assert await owner.names() == {kept.object_name}
    assert len((await owner.ingest.list(FileListQuery(app_id=APP))).files) == 1


async def test_a_replacement_takes_new_bytes_and_drops_the_previous_ones(owner: Owner) -> None:
    old, new = b"# Doors\n\nCode ALPHA-4411.", b"# Doors\n\nCode BRAVO-9922."
    first = (await owner.ingest.upload(await owner.upload(old))).file
    staged = await owner.upload(new, filename="doors.md")
    replacement = FileReplace(
        app_id=APP,
        file_id=first.file_id,
        filename=staged.filename,
        content_type=staged.content_type,
        size=staged.size,
        sha256=staged.sha256,
        staged=staged.staged,
    )
    second = (await owner.ingest.replace(replacement)).file
    assert (second.file_id, second.version, second.status, second.filename) == (
        first.file_id,
        2,
        "queued",
        "doors.md",
    )
    assert second.object_name == staged.staged
    assert await owner.stored(first.object_name) is None  # the old passages need no bytes
    assert await owner.stored(second.object_name) == new
    jobs = await queued_jobs(owner.js, 3)
    assert [(j.version, j.object_name, msg_id) for j, msg_id in jobs] == [
        (1, first.object_name, f"{first.file_id}.v1"),
        (2, second.object_name, f"{first.file_id}.v2"),
    ]
    # The hash moved with the content: the old bytes are new again, the new ones a duplicate.
    assert not (await owner.ingest.upload(await owner.upload(old))).duplicate
    assert (await owner.ingest.upload(await owner.upload(new))).file.file_id == first.file_id

    with pytest.raises(NotFound) as unknown:
        await owner.ingest.replace(msgspec.structs.replace(replacement, file_id="file_nope"))
    assert unknown.value.code == "file_not_found"


async def test_unknown_ill_formed_and_foreign_ids_are_not_found(owner: Owner) -> None:
    mine = (await owner.ingest.upload(await owner.upload(b"mine"))).file
    for app_id, file_id in (
        (APP, "file_missing"),
        (APP, "../../etc"),
        (APP, "sess_abc"),
        (OTHER, mine.file_id),
    ):
        for call in (
            owner.ingest.get(FileLookup(app_id=app_id, file_id=file_id)),
            owner.ingest.delete(IngestDelete(app_id=app_id, file_id=file_id)),
        ):
            with pytest.raises(NotFound) as missing:
                await call
            assert missing.value.code == "file_not_found"
    # A caller cannot hand over bytes of another app.
    foreign = await owner.upload(b"theirs", app_id=OTHER)
    with pytest.raises(BadRequest):
        await owner.ingest.upload(msgspec.structs.replace(foreign, app_id=APP))
    assert await owner.stored(foreign.staged) == b"theirs"


async def test_outcome_waits_for_the_version_and_ends_with_its_deletion(owner: Owner) -> None:
    file = (await owner.ingest.upload(await owner.upload(b"# Hours\n\nOpen at nine."))).file
    query = FileOutcomeQuery(app_id=APP, file_id=file.file_id, version=1, wait_s=0.5)
    started = time.monotonic()
    assert (await owner.ingest.outcome(query)).status == "queued"  # the wait ran out
    assert time.monotonic() - started < 3

    waiting = asyncio.create_task(owner.ingest.outcome(msgspec.structs.replace(query, wait_s=30)))
    await asyncio.sleep(0.3)
    await owner.statuses.update(APP, file.file_id, "ready", chunks=1)
    ready = await asyncio.wait_for(waiting, 5)
    assert (ready.status, ready.chunks) == ("ready", 1)

    await owner.statuses.update(APP, file.file_id, "processing")
    waiting = asyncio.create_task(owner.ingest.outcome(msgspec.structs.replace(query, wait_s=30)))
    await asyncio.sleep(0.3)
    await owner.ingest.delete(IngestDelete(app_id=APP, file_id=file.file_id))
    with pytest.raises(NotFound) as deleted:
        await asyncio.wait_for(waiting, 5)
    assert deleted.value.code == "file_not_found"


async def test_delete_takes_passages_bytes_and_status(owner: Owner) -> None:
    content = b"# Router\n\nThe amber light means an update failed."
    file = (await owner.ingest.upload(await owner.upload(content))).file
    chunk = Chunk(app_id=APP, file_id=file.file_id, filename=file.filename, position=0, text="amber light")
    await owner.index.add([chunk])
    deleted = await owner.ingest.delete(IngestDelete(app_id=APP, file_id=file.file_id))
    assert (deleted.file_id, deleted.vectors_deleted, deleted.files_deleted) == (file.file_id, 1, 1)
    assert await owner.stored(file.object_name) is None
    assert await owner.statuses.get(APP, file.file_id) is None
    with pytest.raises(NotFound):
        await owner.ingest.get(FileLookup(app_id=APP, file_id=file.file_id))
    # The hash went with it: the same bytes are a new file.
    assert not (await owner.ingest.upload(await owner.upload(content))).duplicate


async def test_erasing_an_app_takes_every_file_and_unfinished_upload_only_of_that_app(owner: Owner) -> None:
    kept = (await owner.ingest.upload(await owner.upload(b"other app", app_id=OTHER))).file
    for n in range(2):
        file = (await owner.ingest.upload(await owner.upload(f"file {n}".encode()))).file
        await owner.index.add(
            [Chunk(app_id=APP, file_id=file.file_id, filename="f.md", position=0, text=f"file {n}")]
        )
    unfinished = await stage(owner.objects, APP, b"staged, never handed over")
    erased = await owner.ingest.delete_app(IngestDeleteApp(app_id=APP))
    assert (erased.file_id, erased.files_deleted, erased.vectors_deleted) == ("*", 2, 2)
    assert (await owner.ingest.list(FileListQuery(app_id=APP))).files == []
    assert await owner.stored(unfinished) is None
    assert await owner.names() == {kept.object_name}
    assert (await owner.ingest.list(FileListQuery(app_id=OTHER))).files == [kept]


async def test_nats_failing_under_a_handler_is_a_503_not_a_500(owner: Owner) -> None:
    upload = await owner.upload(b"# Hours\n\nOpen at nine.")
    file = (await owner.ingest.upload(upload)).file
    await close(owner.nc)  # every KV and Object Store call of the handlers now fails at once
    for call in (
        owner.ingest.get(FileLookup(app_id=APP, file_id=file.file_id)),
        owner.ingest.upload(msgspec.structs.replace(upload, sha256="0" * 64)),
        owner.ingest.delete(IngestDelete(app_id=APP, file_id=file.file_id)),
    ):
        with pytest.raises(DependencyUnavailable) as lost:
            await call
        assert lost.value.code == "nats_unavailable"


async def test_a_wait_over_nats_ends_with_a_503_when_the_gateway_loses_nats(tmp_path: Path) -> None:
    """What ``POST /v1/files?wait=`` waits on, across NATS: the outcome as soon as ingest writes
    it, and when NATS goes a 503 within a second or two, not at the end of the wait (the
    reply could never arrive)."""
    server = nats_server(tmp_path).start()
    ingest_nc = await connect(server.url, name="ingest-side")
    gateway_nc = await connect(server.url, name="gateway-side")
    try:
        owner = await serve_owner(server, ingest_nc, tmp_path, NatsBus(ingest_nc), NatsBus(gateway_nc))
        ingest, statuses = owner.ingest, owner.statuses
        file = (await ingest.upload(await owner.upload(b"# Hours\n\nOpen at nine."))).file
        query = FileOutcomeQuery(app_id=APP, file_id=file.file_id, version=1, wait_s=60)

        def outcome() -> asyncio.Task[FileStatus]:
            call = ingest.outcome(query, timeout=65)
            return asyncio.create_task(_while_connected(lambda: gateway_nc.is_connected, call))

        ready = outcome()
        await asyncio.sleep(0.3)
        assert not ready.done()
        await statuses.update(APP, file.file_id, "ready", chunks=1)
        assert (await asyncio.wait_for(ready, 3)).status == "ready"

        await statuses.update(APP, file.file_id, "processing")
        waiting = outcome()
        await asyncio.sleep(0.3)
        server.stop()
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable) as lost:
            await asyncio.wait_for(waiting, 10)
        assert lost.value.code == "nats_unavailable"
        assert time.monotonic() - started < 3
        await owner.bindings.stop()
    finally:
        await close_indexes()
        await close(gateway_nc)
        await close(ingest_nc)
        server.stop()


def test_without_ingest_an_upload_is_a_503_and_leaves_no_bytes(lone_gateway: LoneGateway) -> None:
    api = lone_gateway.api
    app_id, key = api.new_tenant("no-ingest")
    response = api.upload(key, "hours.md", b"# Hours\n\nOpen at nine.")
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "ingest_unavailable"
    listed = api.http.get("/v1/files", headers=api.auth(key))
    assert (listed.status_code, listed.json()["error"]["code"]) == (503, "ingest_unavailable")

    async def stored() -> list[str]:
        nc = await connect(lone_gateway.bus.nats.url, name="no-ingest-check")
        try:
            objects = await nc.jetstream().object_store(subjects.OBJECT_STORE_FILES)
            try:
                infos = await objects.list(ignore_deletes=True)
            except NotFoundError:
                return []
            return [info.name for info in infos if info.name.startswith(f"{app_id}/")]
        finally:
            await close(nc)

    assert asyncio.run(stored()) == []  # staged, then withdrawn when nobody took them over
