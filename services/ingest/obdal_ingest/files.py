"""The file lifecycle: a file's bytes (Object Store), status (KV) and passages (the index),
written by ingest alone.

What the :class:`~obdal_common.contract.Ingest` RPCs do (bound in :mod:`obdal_ingest.bindings`);
the job consumer (:mod:`obdal_ingest.jobs`) then takes a queued version to ``ready`` or
``failed``. The caller (the gateway) stages an upload's bytes itself
(:func:`obdal_common.contract.ingest.stage`) and hands their name over: once ingest answers
an upload or a replacement, the bytes are ingest's (the file's content, or deleted as a
duplicate's); an error answer leaves them to the caller to withdraw.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from obdal_common import subjects
from obdal_common.contract.ingest import MAX_WAIT_S
from obdal_common.errors import BadRequest, NotFound
from obdal_common.ids import is_id, new_id
from obdal_common.messaging import erase_object
from obdal_common.schemas import (
    FileAccepted,
    FileList,
    FileListQuery,
    FileLookup,
    FileOutcomeQuery,
    FileReplace,
    FileStatus,
    FileUpload,
    IngestDelete,
    IngestDeleteApp,
    IngestDeleted,
    IngestJob,
    encode,
)
from obdal_common.telemetry import inject_headers
from obdal_ingest.answers import CuratedAnswerStore
from obdal_ingest.indexing import IndexWriter
from obdal_ingest.statuses import FileStatusStore

__all__ = ["FileLifecycle"]

log = logging.getLogger(__name__)


def _prefix(app_id: str) -> str:
    """Where an app's bytes are in the Object Store: staged names are ``<app_id>/upload_…``."""
    return f"{app_id}/"


def _bytes_of(status: FileStatus) -> str:
    # Records written before ingest owned the bytes have no object_name: theirs were at <app>/<file>.
    return status.object_name or f"{status.app_id}/{status.file_id}"


def _check_staged(app_id: str, staged: str) -> None:
    if not staged.startswith(_prefix(app_id)) or staged == _prefix(app_id):
        raise BadRequest(f"staged bytes must be under {_prefix(app_id)}", code="bad_message")


class FileLifecycle:
    """Every file of every app, from upload to deletion."""

    def __init__(
        self,
        *,
        statuses: FileStatusStore,
        objects: ObjectStore,
        js: JetStreamContext,
        index: IndexWriter,
        answers: CuratedAnswerStore,
        connected: Callable[[], bool],
    ) -> None:
        self._statuses = statuses
        self._objects = objects
        self._js = js
        self._index = index
        self._answers = answers
        self._connected = connected

    async def upload(self, req: FileUpload) -> FileAccepted:
        """Record and queue a new file; the app's live file with the same content if it has one."""
        _check_staged(req.app_id, req.staged)
        # Most duplicates end here; claim_hash below settles identical uploads that race.
        if holder := await self._statuses.holder(req.app_id, req.sha256):
            return await self._duplicate(req, holder)
        now = datetime.now(UTC)
        status = FileStatus(
            file_id=new_id("file"),
            app_id=req.app_id,
            filename=req.filename,
            status="queued",
            size=req.size,
            content_type=req.content_type,
            sha256=req.sha256,
            created_at=now,
            updated_at=now,
            object_name=req.staged,
            source_id=req.source_id,
            url=req.url,
        )
        # The status goes in first, so a racing identical upload that loses the claim finds its holder.
        await self._statuses.put(status)
        holder = await self._statuses.claim_hash(status)
        if holder is not None:
            await self._statuses.delete(status.app_id, status.file_id)
            return await self._duplicate(req, holder)
        try:
            await self._queue(status)
        except Exception:
            # Never queued, so never accepted: withdraw the record (the caller, its bytes).
            await self._quietly(self._statuses.delete(status.app_id, status.file_id), "withdraw", status)
            raise
        return FileAccepted(file=status)

    async def _duplicate(self, req: FileUpload, holder: FileStatus) -> FileAccepted:
        await self.discard(req.staged)  # the holder has these bytes already
        return FileAccepted(file=holder, duplicate=True)

    async def replace(self, req: FileReplace) -> FileAccepted:
        """Queue a new version of a file; the previous version's bytes go once it is recorded."""
        current = await self._owned(req.app_id, req.file_id)
        _check_staged(req.app_id, req.staged)
        await self._statuses.forget_hash(current)
        status = msgspec.structs.replace(
            current,
            filename=req.filename,
            status="queued",
            size=req.size,
            content_type=req.content_type,
            sha256=req.sha256,
            updated_at=datetime.now(UTC),
            version=current.version + 1,
            progress=0,
            error=None,
            started_at=None,
            finished_at=None,
            object_name=req.staged,
            url=req.url or current.url,
        )
        await self._statuses.put(status)
        await self._statuses.remember_hash(status)
        try:
            await self._queue(status)
        except Exception:
            # Never queued: the file stays as it was (its bytes too), the new ones are the caller's.
            await self._quietly(self._restore(current, status), "restore", current)
            raise
        if _bytes_of(current) != req.staged:
            # The previous version's passages stay searchable until the new ones are in, but
            # need no bytes; a job of that version still queued is skipped as stale.
            await self.discard(_bytes_of(current))
        if status.filename != current.filename:  # curated answers cite it by name
            await self._answers.follow_file(status.app_id, status.file_id, filename=status.filename)
        return FileAccepted(file=status)

    async def _restore(self, current: FileStatus, replacement: FileStatus) -> None:
        await self._statuses.forget_hash(replacement)
        await self._statuses.put(current)
        await self._statuses.remember_hash(current)

    async def get(self, req: FileLookup) -> FileStatus:
        return await self._owned(req.app_id, req.file_id)

    async def list_files(self, req: FileListQuery) -> FileList:
        return FileList(files=await self._statuses.list(req.app_id))

    async def outcome(self, req: FileOutcomeQuery) -> FileStatus:
        """The status once ``req.version`` is ready or failed, or as it stands after ``wait_s``."""
        if not is_id("file", req.file_id):
            raise NotFound(f"no file {req.file_id}", code="file_not_found")
        found = await self._statuses.outcome(
            req.app_id,
            req.file_id,
            version=req.version,
            wait_s=max(0.0, min(req.wait_s, MAX_WAIT_S)),
            connected=self._connected,
        )
        if found is None:
            raise NotFound(f"file {req.file_id} was deleted while waiting for it", code="file_not_found")
        return found

    async def delete(self, req: IngestDelete) -> IngestDeleted:
        """Passages first (no answer cites the file once this returns), then bytes, then the
        curated answers' mention of it as their source, then status (last, so a delete that
        failed half-way can be repeated)."""
        status = await self._owned(req.app_id, req.file_id)
        removed = await self._index.delete_file(req.app_id, req.file_id)
        await self._erase(_bytes_of(status))
        await self._answers.follow_file(req.app_id, req.file_id, filename=None)
        await self._statuses.delete(req.app_id, req.file_id)
        return IngestDeleted(file_id=req.file_id, vectors_deleted=removed, files_deleted=1)

    async def delete_app(self, req: IngestDeleteApp) -> IngestDeleted:
        """Every passage of the app (those whose status is lost too), every file, every byte, and
        its curated answers (the app's knowledge too)."""
        removed = await self._index.delete_app(req.app_id)
        await self._answers.delete_app(req.app_id)
        statuses = await self._statuses.list(req.app_id)
        for status in statuses:
            await self._erase(_bytes_of(status))
            await self._statuses.delete(req.app_id, status.file_id)
        # Bytes no status names: staged for an upload that never completed, or left by a
        # replacement whose clean-up failed.
        for name in await self._names_under(_prefix(req.app_id)):
            await self._erase(name)
        return IngestDeleted(file_id="*", vectors_deleted=removed, files_deleted=len(statuses))

    async def _owned(self, app_id: str, file_id: str) -> FileStatus:
        status = await self._statuses.get(app_id, file_id) if is_id("file", file_id) else None
        if status is None:
            raise NotFound(f"no file {file_id}", code="file_not_found")
        return status

    async def _queue(self, status: FileStatus) -> None:
        job = IngestJob(
            app_id=status.app_id,
            file_id=status.file_id,
            filename=status.filename,
            content_type=status.content_type,
            size=status.size,
            sha256=status.sha256,
            object_name=status.object_name,
            version=status.version,
            url=status.url,
        )
        msg_id = f"{status.file_id}.v{status.version}"  # JetStream drops a re-published duplicate
        await self._js.publish(
            subjects.INGEST_JOB, encode(job), headers=inject_headers({"Nats-Msg-Id": msg_id})
        )

    async def _names_under(self, prefix: str) -> list[str]:
        try:
            infos = await self._objects.list(ignore_deletes=True)
        except NotFoundError:  # the store is empty
            return []
        return [info.name for info in infos if info.name.startswith(prefix) and not info.deleted]

    async def _erase(self, name: str) -> None:
        """Delete bytes that must go (a deletion asked for): only "already gone" is fine."""
        with contextlib.suppress(NotFoundError):
            await self._erase_bytes(name)

    async def discard(self, name: str) -> None:
        """Delete bytes nobody needs any more; failing to is logged, not the request's failure
        (``delete_app`` sweeps whatever is left under the app's prefix)."""
        try:
            await self._erase_bytes(name)
        except NotFoundError:
            pass
        except nats.errors.Error as exc:
            log.warning("could not delete unneeded bytes %s: %r", name, exc)

    async def _erase_bytes(self, name: str) -> None:
        # Overwritten on disk, not only purged: a purged chunk stays readable in its block file.
        await erase_object(self._js, self._objects, bucket=subjects.OBJECT_STORE_FILES, name=name)

    async def _quietly(self, undo: Awaitable[None], what: str, status: FileStatus) -> None:
        try:
            await undo
        except Exception as exc:
            log.warning("could not %s file %s after a failed publish: %r", what, status.file_id, exc)
