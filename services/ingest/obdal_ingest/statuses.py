"""File status records (NATS KV): ingest's, as the owner of the file lifecycle (:mod:`.files`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from obdal_common import subjects
from obdal_common.errors import DependencyUnavailable
from obdal_common.messaging import keys_matching, read_record
from obdal_common.schemas import FileState, FileStatus, decode, encode

__all__ = ["FileStatusStore"]

_OUTCOMES: tuple[FileState, ...] = ("ready", "failed")
# How often a wait for an outcome checks that NATS is still there to deliver it.
_CHECK_S = 1.0
# Records a listing asks NATS for at once: one at a time, 1,000 files took 374 ms; 100 at once, 97-127 ms.
_READS_AT_ONCE = 100


def _key(app_id: str, file_id: str) -> str:
    return f"{app_id}.{file_id}"


def _holds(found: FileStatus | None, sha256: str) -> FileStatus | None:
    """``found`` if it still holds content ``sha256``: a failed file gives its hash up (it may have
    failed for a passing reason, e.g. the index was down, so identical bytes get another try)."""
    return found if found is not None and found.sha256 == sha256 and found.status != "failed" else None


def _hash_key(app_id: str, sha256: str) -> str:
    # Two tokens after the app id: never matched by list()'s ``<app_id>.*`` filter.
    return f"{app_id}.sha256.{sha256}"


class FileStatusStore:
    """File status records in NATS KV (bucket ``obdal_files``), keyed ``<app_id>.<file_id>``."""

    def __init__(self, kv: KeyValue, *, js: JetStreamContext) -> None:
        self._kv = kv
        self._js = js

    async def put(self, status: FileStatus) -> None:
        await self._kv.put(_key(status.app_id, status.file_id), encode(status))

    async def get(self, app_id: str, file_id: str) -> FileStatus | None:
        """The file's status, or ``None`` if the app has no such file."""
        found = await read_record(self._kv, _key(app_id, file_id), FileStatus)
        return found[0] if found else None

    async def update(
        self, app_id: str, file_id: str, state: FileState, *, version: int | None = None, **changes: Any
    ) -> FileStatus | None:
        """Move a file to ``state`` (with other field changes).

        ``None`` if it was deleted meanwhile, or replaced by a version other than ``version``.
        """
        current = await self.get(app_id, file_id)
        if current is None or (version is not None and current.version != version):
            return None
        updated = msgspec.structs.replace(current, status=state, updated_at=datetime.now(UTC), **changes)
        await self.put(updated)
        return updated

    async def outcome(
        self, app_id: str, file_id: str, *, version: int, wait_s: float, connected: Callable[[], bool]
    ) -> FileStatus | None:
        """The file's status once ``version`` (or a later one) is ``ready`` or ``failed``, else as it
        stands when ``wait_s`` seconds have passed; ``None`` if the file is deleted meanwhile.

        A watch of the file's key, so the outcome is seen the moment ingest writes it. Without NATS
        no update can come: ``connected`` is checked every second and its loss is a 503 at once.
        """
        watcher = await self._kv.watch(_key(app_id, file_id))
        deadline = time.monotonic() + wait_s
        latest: FileStatus | None = None
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    entry = await watcher.updates(timeout=min(left, _CHECK_S))  # type: ignore[no-untyped-call]
                except NatsTimeoutError:
                    if not connected():
                        raise DependencyUnavailable(
                            "the message bus is unavailable", code="nats_unavailable"
                        ) from None
                    continue
                if entry is None:  # the end of the current value; changes follow
                    continue
                if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                    return None
                latest = decode(entry.value, FileStatus)
                if latest.version >= version and latest.status in _OUTCOMES:
                    return latest
        finally:
            with contextlib.suppress(Exception):  # NATS gone: the server drops the watch by itself
                await watcher.stop()  # type: ignore[no-untyped-call]
        # A wait too short for even the current value to arrive: read it.
        return latest if latest is not None else await self.get(app_id, file_id)

    async def list(self, app_id: str) -> list[FileStatus]:
        """Every file of an app, newest first.

        The keys come from the stream's own count of messages per subject, one request that
        answers for the stream as it stands. A KV watch was used before, and it missed files
        while others were being written (38 of 200 listings incomplete with ten files being
        updated): nats-py ends a watch's initial values when the consumer reports
        nothing pending and none has been received yet, which is also true when the server has
        sent them all and none has been read off the socket yet. (``KeyValue.keys()`` is that
        same watch, over every app.) The server lists up to 100,000 subjects in one answer, far
        more files than an app holds here; nats-py asks for no further page.
        """
        # Subjects of a purged key keep their marker: those records read as absent and are skipped.
        keys = await keys_matching(self._js, subjects.KV_FILES, _key(app_id, "*"))
        file_ids = [key.rsplit(".", 1)[1] for key in keys]
        found: list[FileStatus] = []
        for at in range(0, len(file_ids), _READS_AT_ONCE):
            batch = file_ids[at : at + _READS_AT_ONCE]
            found += [s for s in await asyncio.gather(*(self.get(app_id, f) for f in batch)) if s]
        return sorted(found, key=lambda s: s.created_at, reverse=True)

    async def delete(self, app_id: str, file_id: str) -> None:
        current = await self.get(app_id, file_id)
        if current is not None:
            await self.forget_hash(current)
        await self._kv.purge(_key(app_id, file_id))

    async def remember_hash(self, status: FileStatus) -> None:
        """Index the file by content hash, so an identical re-upload is recognised."""
        await self._kv.put(_hash_key(status.app_id, status.sha256), status.file_id.encode())

    async def claim_hash(self, status: FileStatus) -> FileStatus | None:
        """Index a new file by content hash unless another live file of the app holds that hash.

        Returns the holder (the new file is a duplicate of it), or ``None`` once ``status`` holds
        the hash. Compare-and-set in KV, so of two identical uploads racing through any replicas
        exactly one wins. A holder that failed, was deleted or replaced gives the hash up.
        """
        key = _hash_key(status.app_id, status.sha256)
        value = status.file_id.encode()
        while True:
            try:
                await self._kv.create(key, value)
                return None
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                continue  # given up in between: create again
            found = await self.get(status.app_id, entry.value.decode()) if entry.value else None
            if holder := _holds(found, status.sha256):
                return holder
            try:
                await self._kv.update(key, value, last=entry.revision)
                return None
            except KeyWrongLastSequenceError:
                continue  # another upload took it first: look at that one

    async def holder(self, app_id: str, sha256: str) -> FileStatus | None:
        """The app's file that holds this content (an upload of it is a duplicate), if any."""
        return _holds(await self.find_by_hash(app_id, sha256), sha256)

    async def forget_hash(self, status: FileStatus) -> None:
        """Drop the hash entry if it still points at this file."""
        found = await self.find_by_hash(status.app_id, status.sha256)
        if found is not None and found.file_id == status.file_id:
            await self._kv.purge(_hash_key(status.app_id, status.sha256))

    async def find_by_hash(self, app_id: str, sha256: str) -> FileStatus | None:
        """The app's file whose current content has this SHA-256, if any."""
        try:
            entry = await self._kv.get(_hash_key(app_id, sha256))
        except KeyNotFoundError:
            return None
        found = await self.get(app_id, entry.value.decode()) if entry.value else None
        return found if found is not None and found.sha256 == sha256 else None
