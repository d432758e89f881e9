"""One app as one archive (``GET /v1/export``, docs/export.md): a gzip-compressed tar of open
formats, gathered from every owner through its contract and streamed as it is read.

Members, in order: ``app.json`` (settings, never the identity secret), ``keys.ndjson`` (key
metadata, never secrets or hashes), ``sources.ndjson`` (website sources), ``answers.ndjson``
(curated answers), ``files.ndjson`` and each file's original bytes under
``files/<file_id>/<name>`` (documents and websites' pages), ``sessions/NNNNN.ndjson`` (every
session with every message, one metering page per member), ``usage/NNNNN.ndjson`` (every usage
record), and last ``manifest.json``: the schema version, counts, and the SHA-256 and size of
every other member. An archive without ``manifest.json`` was cut short.

Sessions and usage come in members of one page each, so an app's history never has to fit in
memory; files are read one at a time. Erased sessions are not in metering's pages, and a usage
record of a session that is not exported (erased) leaves its ``session_id`` out: an erased
conversation is named nowhere in a later export.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import msgspec

from obdal_common.schemas import (
    AppRecord,
    CuratedAnswerQuery,
    FileListQuery,
    SessionExportQuery,
    SourceListQuery,
    UsageRecordsQuery,
)
from obdal_gateway.identity import public_app
from obdal_gateway.routes.admin_keys import key_view
from obdal_gateway.routes.answers import public_answer
from obdal_gateway.routes.files import public_file
from obdal_gateway.routes.sources import public_source
from obdal_gateway.state import Gateway

__all__ = ["SCHEMA_VERSION", "AppExport", "gather"]

SCHEMA_VERSION = 1
_FORMAT = "obdal-app-export"
_BLOCK = 512
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


class _Page(Protocol):
    @property
    def next_cursor(self) -> str | None: ...


Q = TypeVar("Q", bound=msgspec.Struct)
P = TypeVar("P", bound=_Page)


async def _pages(fetch: Callable[[Q], Awaitable[P]], query: Q) -> AsyncIterator[P]:
    """Every page ``fetch`` answers for ``query``, each next one from the last's ``next_cursor``."""
    while True:
        page = await fetch(query)
        yield page
        if page.next_cursor is None:
            return
        query = msgspec.structs.replace(query, cursor=page.next_cursor)


def _ndjson(rows: Iterable[Any]) -> bytes:
    return b"".join(json.dumps(row, ensure_ascii=False, sort_keys=True).encode() + b"\n" for row in rows)


def _safe_name(filename: str) -> str:
    """A file's name as an archive path part: no directories, nothing a shell or tar misreads."""
    name = _UNSAFE.sub("_", filename.replace("/", "_")).strip(" .") or "file"
    return name[:120]


class _Tar:
    """A tar written member by member, gzip-compressed as it goes (``tarfile`` needs a file)."""

    def __init__(self) -> None:
        self._gzip = zlib.compressobj(6, zlib.DEFLATED, 31)
        self.members: dict[str, dict[str, Any]] = {}

    def add(self, name: str, data: bytes) -> bytes:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = int(time.time())
        info.mode = 0o644
        self.members[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        padding = b"\0" * (-len(data) % _BLOCK)
        raw = info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8") + data + padding
        return self._gzip.compress(raw)

    def close(self) -> bytes:
        return self._gzip.compress(b"\0" * (2 * _BLOCK)) + self._gzip.flush()


class AppExport(msgspec.Struct, frozen=True, kw_only=True):
    """What is read before the archive starts (so a missing service is a 503, not a cut
    archive); the rest is read while it streams."""

    app: AppRecord
    keys: list[dict[str, Any]]
    sources: list[dict[str, Any]]
    answers: list[dict[str, Any]]
    files: list[dict[str, Any]]
    objects: dict[str, str]  # file id -> object name of its current bytes

    def filename(self) -> str:
        return f"obdal-export-{self.app.app_id}-{datetime.now(UTC):%Y%m%d-%H%M%S}.tar.gz"

    async def stream(self, gw: Gateway) -> AsyncIterator[bytes]:
        tar = _Tar()
        counts: dict[str, int] = {}
        yield tar.add("app.json", json.dumps(public_app(self.app), indent=2, sort_keys=True).encode())
        for name, rows in (("keys", self.keys), ("sources", self.sources), ("answers", self.answers)):
            counts[name] = len(rows)
            yield tar.add(f"{name}.ndjson", _ndjson(rows))
        counts["files"] = len(self.files)
        yield tar.add("files.ndjson", _ndjson(self.files))
        for file in self.files:
            data = await gw.objects.get(self.objects[file["file_id"]])
            yield tar.add(file["path"], data.data or b"")
        exported: set[str] = set()
        async for chunk in _sessions(gw, self.app.app_id, tar, exported, counts):
            yield chunk
        async for chunk in _usage(gw, self.app.app_id, tar, exported, counts):
            yield chunk
        manifest = {
            "format": _FORMAT,
            "schema_version": SCHEMA_VERSION,
            "app_id": self.app.app_id,
            "exported_at": datetime.now(UTC).isoformat(),
            "counts": counts,
            "members": tar.members,
        }
        yield tar.add("manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())
        yield tar.close()


async def _sessions(
    gw: Gateway, app_id: str, tar: _Tar, exported: set[str], counts: dict[str, int]
) -> AsyncIterator[bytes]:
    counts["sessions"] = 0
    n = 0
    async for page in _pages(gw.metering.export, SessionExportQuery(app_id=app_id)):
        if page.sessions:
            n += 1
            exported.update(s.session_id for s in page.sessions)
            counts["sessions"] += len(page.sessions)
            yield tar.add(f"sessions/{n:05d}.ndjson", _ndjson(msgspec.to_builtins(page.sessions)))


async def _usage(
    gw: Gateway, app_id: str, tar: _Tar, exported: set[str], counts: dict[str, int]
) -> AsyncIterator[bytes]:
    counts["usage"] = 0
    n = 0
    async for page in _pages(gw.metering.usage_records, UsageRecordsQuery(app_id=app_id, limit=1000)):
        rows = []
        for record in msgspec.to_builtins(page.records):
            record.pop("app_id")
            if record["session_id"] not in exported:
                record["session_id"] = None
            rows.append(record)
        if rows:
            n += 1
            counts["usage"] += len(rows)
            yield tar.add(f"usage/{n:05d}.ndjson", _ndjson(rows))


async def gather(gw: Gateway, app_id: str) -> AppExport:
    """The app's settings, keys, sources, curated answers and file list, from their owners."""
    app = await gw.apps.get(app_id)
    records = gw.keys.for_app(app_id)
    last_used = await gw.keys.last_used([k.key_id for k in records])
    answers = [
        public_answer(a)
        async for page in _pages(gw.ingest.answer_list, CuratedAnswerQuery(app_id=app_id, limit=100))
        for a in page.answers
    ]
    # Only a file with bytes in the object store (``object_name``) has bytes to export.
    stored = [s for s in (await gw.ingest.list(FileListQuery(app_id=app_id))).files if s.object_name]
    files = [{**public_file(s), "path": f"files/{s.file_id}/{_safe_name(s.filename)}"} for s in stored]
    sources = (await gw.ingest.source_list(SourceListQuery(app_id=app_id))).sources
    return AppExport(
        app=app,
        keys=[key_view(k, last_used[k.key_id]) for k in records],
        sources=[public_source(s) for s in sources],
        answers=answers,
        files=files,
        objects={s.file_id: s.object_name for s in stored},
    )
