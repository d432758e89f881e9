"""``obdal backup DIR`` and ``obdal restore DIR``: the embedded stack's data, taken while it runs.

What is copied, and how (docs/operations.md, "Backup and restore"):

- **NATS**: every stream (the KV buckets and the object store are streams too), message by
  message with its subject, headers and data, read up to the last sequence it had when its
  turn came, and on restore republished in order into a stream created with the saved
  configuration. Ordered republishing gives the same KV values, objects and queued jobs (only
  sequence numbers and store times are new, and the headers acted on at publish time are dropped).
  nats-py has no snapshot call; the server's ``$JS.API.STREAM.SNAPSHOT``/``RESTORE`` pair sends
  the stream's block files in chunks under flow control, which would have to be written by hand,
  for data that one request per message reads as well.
  Left out: console sign-ins (``KV_obdal_console_sessions``: a restore should not sign anyone in;
  they sign in again), and the usage and audit events metering has acknowledged (at or below its
  consumer's ack floor), which are in MongoDB, dumped after that floor is read; the rest is
  delivered again on the next start, and metering is idempotent by event id.
- **MongoDB**: every collection of ``OBDAL_MONGO_DB`` as raw BSON (what ``mongodump`` writes,
  never decoded, so nothing changes type), and its indexes, re-created on restore.
- **Session keys** (``OBDAL_SESSION_KEYS``) last, after MongoDB: every session MongoDB holds
  then has its key in the backup.
- **The index is not copied**: the running process holds the only handle on the Qdrant Edge
  shard (its snapshot calls need that handle), and its files copied from outside can be mid-write.
  Restore re-indexes every ready file from its bytes in the object store, with the same parsing,
  chunking and point ids as ingest, so the same questions find the same passages. Measured here
  (2 cores, MiniLM int8, 2 small files, ~150 messages, 100 MongoDB documents): the re-index took
  1.2-1.4 s of a 6.6-7.6 s restore, loading the model included (MongoDB 0.2-0.3 s, NATS < 0.1 s;
  the rest is starting a new SecantusDB store twice, as every first start does, and stopping the
  servers); larger stores add ~9 chunks/s of embedding (docs/ingestion.md), 1,000 chunks ~2 min.
  A copy of the shard would have been faster to restore but not consistent, and a snapshot needs
  the stack stopped.
- ``admin_token``; not ``credentials.json`` (the restored servers get new passwords).
- Redis is not copied: it holds rate-limit windows, budgets' counters, hot session context and
  keys' last-used times, and the embedded one keeps nothing across a restart either.

The running servers are found by the ports ``obdal up`` records in ``servers.json`` (with its
pid: a file left by a killed stack names no running process); their passwords are in
``credentials.json``. ``OBDAL_NATS_URL`` and
``OBDAL_MONGO_URL`` name other servers instead; with the stack stopped, backup starts the data
dir's servers itself. Every file's sha256 is in ``manifest.json``, and restore checks them all
before it writes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import msgspec
from bson import decode_file_iter
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ObjectNotFoundError
from pymongo import IndexModel, MongoClient

from obdal.servers import ManagedServer, mongo_server, nats_server, private_dir, recorded_port
from obdal_common import subjects
from obdal_common.errors import ObdalError
from obdal_common.messaging import close, connect, keys_matching, read_record
from obdal_common.schemas import FileStatus
from obdal_common.settings import load_settings
from obdal_ingest.parser_pool import ParserPool
from obdal_ingest.pipeline import passages
from obdal_ingest.settings import IngestSettings
from obdal_retrieval import close_indexes, open_index

__all__ = ["SCHEMA_VERSION", "BackupError", "backup", "restore"]

SCHEMA_VERSION = 1
_MANIFEST = "manifest.json"
_ADMIN_TOKEN = "admin_token"
_SKIPPED_STREAMS = frozenset({f"KV_{subjects.KV_CONSOLE_SESSIONS}"})
# Streams whose acknowledged messages are elsewhere already: metering's events, in MongoDB.
_ACKED_ELSEWHERE = {subjects.EVENTS_STREAM: subjects.METERING_CONSUMER}
_LAST = subjects.SESSION_KEYS_STREAM
# Headers the server acts on at publish time, which would refuse or drop a republished message
# (expected sequences are the old stream's; a message id would dedupe against the restore itself).
_PUBLISH_ONLY_HEADERS = ("Nats-Expected-", "Nats-Msg-Id")
_RAW = CodecOptions(document_class=RawBSONDocument)
_INSERT_BATCH = 500
_LENGTH = struct.Struct(">I")


class BackupError(Exception):
    """A backup or restore refused (bad target, corrupt backup): the message says why."""


@dataclass
class _Manifest:
    """What ``manifest.json`` holds; ``files`` maps each file's path in the backup to its sha256."""

    created_at: str
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    ready_files: int = 0
    admin_token: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "created_at": self.created_at,
            "contents": {
                "nats_streams": self.streams,
                "mongo_collections": self.collections,
                "admin_token": self.admin_token,
                "index": {"copied": False, "ready_files_to_reindex": self.ready_files},
            },
            "files": self.files,
        }


# --- where the servers are ----------------------------------------------------------------


@contextlib.contextmanager
def _servers(data_dir: Path) -> Iterator[tuple[str, str]]:
    """The NATS and MongoDB URLs to back up: the environment's, the data dir's running servers',
    or else the data dir's servers started here (and stopped after)."""
    started: list[ManagedServer] = []
    try:
        nats_url = os.environ.get("OBDAL_NATS_URL") or _data_dir_server(
            data_dir, "nats", started, make=nats_server
        )
        mongo_url = os.environ.get("OBDAL_MONGO_URL") or _data_dir_server(
            data_dir, "mongo", started, make=mongo_server
        )
        yield nats_url, mongo_url
    finally:
        for server in reversed(started):
            server.stop()


def _data_dir_server(
    data_dir: Path, name: str, started: list[ManagedServer], *, make: Callable[..., ManagedServer]
) -> str:
    port = recorded_port(data_dir, name)
    if port is not None:
        return make(data_dir, port=port).url
    if not (data_dir / name).is_dir():
        raise BackupError(f"{data_dir} has no {name} data: not an obdal data dir (OBDAL_DATA_DIR)")
    server = make(data_dir).start()
    started.append(server)
    return server.url


# --- files --------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_record(handle: IO[bytes], record: bytes) -> None:
    handle.write(_LENGTH.pack(len(record)))
    handle.write(record)


def _records(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while header := handle.read(_LENGTH.size):
            yield handle.read(_LENGTH.unpack(header)[0])


class _Message(msgspec.Struct, frozen=True):
    subject: str
    data: bytes
    headers: dict[str, str] | None = None


# --- backup -------------------------------------------------------------------------------


def backup(*, data_dir: Path, dest: Path) -> dict[str, Any]:
    """Back up the stack of ``data_dir`` into ``dest`` (new or empty); the manifest written."""
    _require_empty(dest, what="backup directory")
    settings = load_settings(IngestSettings, data_dir=data_dir)
    manifest = _Manifest(created_at=datetime.now(UTC).isoformat())
    with _servers(data_dir) as (nats_url, mongo_url):
        private_dir(dest)
        asyncio.run(_backup_all(nats_url, mongo_url, settings.mongo_db, dest, manifest))
    if (data_dir / _ADMIN_TOKEN).exists():
        shutil.copy2(data_dir / _ADMIN_TOKEN, dest / _ADMIN_TOKEN)
        manifest.admin_token = True
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        manifest.files[path.relative_to(dest).as_posix()] = _sha256(path)
    body = manifest.as_json()
    (dest / _MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return body


async def _backup_all(nats_url: str, mongo_url: str, db: str, dest: Path, manifest: _Manifest) -> None:
    nc = await connect(nats_url, name="obdal-backup")
    try:
        js = nc.jetstream()
        names = sorted(info.config.name for info in await js.streams_info() if info.config.name)
        for name in names:
            if name not in _SKIPPED_STREAMS and name != _LAST:
                manifest.streams[name] = await _backup_stream(nc, js, name, dest)
        manifest.ready_files = len(await _ready_files(js))
        manifest.collections = _backup_mongo(mongo_url, db, dest)
        if _LAST in names:
            manifest.streams[_LAST] = await _backup_stream(nc, js, _LAST, dest)
    finally:
        await close(nc)


async def _api(nc: NATS, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JetStream API call by its raw subject; the answer, or :class:`BackupError`."""
    reply = await nc.request(subject, json.dumps(body).encode() if body else b"", timeout=10)
    answer: dict[str, Any] = json.loads(reply.data)
    if "error" in answer:
        raise BackupError(f"{subject}: {answer['error'].get('description', answer['error'])}")
    return answer


async def _backup_stream(nc: NATS, js: JetStreamContext, name: str, dest: Path) -> dict[str, Any]:
    # The raw configuration, as the server states it: restore creates the stream from exactly it.
    info = await _api(nc, f"$JS.API.STREAM.INFO.{name}")
    last = int(info["state"]["last_seq"])
    after = await _acked_floor(js, name)
    folder = private_dir(dest / "nats")
    (folder / f"{name}.json").write_text(json.dumps(info["config"], indent=2, sort_keys=True) + "\n")
    count = 0
    with (folder / f"{name}.msgs").open("wb") as handle:
        async for message in _messages(js, name, after=after, last=last):
            _write_record(handle, msgspec.msgpack.encode(message))
            count += 1
    return {"messages": count, "acknowledged_left_out": after}


async def _acked_floor(js: JetStreamContext, stream: str) -> int:
    consumer = _ACKED_ELSEWHERE.get(stream)
    if consumer is None:
        return 0
    try:
        info = await js.consumer_info(stream, consumer)
    except NotFoundError:
        return 0
    return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0


async def _messages(js: JetStreamContext, stream: str, *, after: int, last: int) -> AsyncIterator[_Message]:
    """The stream's messages with sequence in ``(after, last]``, in order, skipping deleted ones."""
    seq = after + 1
    while seq <= last:
        try:
            raw = await js.get_msg(stream, seq=seq, subject=">", next=True)
        except NotFoundError:  # nothing left after seq
            return
        if raw.seq is None or raw.seq > last:
            return
        headers = {k: v for k, v in (raw.headers or {}).items() if not k.startswith(_PUBLISH_ONLY_HEADERS)}
        yield _Message(subject=raw.subject or "", data=raw.data or b"", headers=headers or None)
        seq = raw.seq + 1


def _backup_mongo(url: str, db: str, dest: Path) -> dict[str, dict[str, Any]]:
    folder = private_dir(dest / "mongo")
    found: dict[str, dict[str, Any]] = {}
    client: MongoClient[RawBSONDocument] = MongoClient(url, document_class=RawBSONDocument)
    with client:
        database = client[db]
        for name in sorted(database.list_collection_names()):
            if name.startswith("system."):
                continue
            collection = database.get_collection(name, codec_options=_RAW)
            count = 0
            with (folder / f"{name}.bson").open("wb") as handle:
                for document in collection.find({}, sort=[("_id", 1)]):
                    handle.write(document.raw)
                    count += 1
            indexes = [_index_spec(dict(index)) for index in collection.list_indexes()]
            found[name] = {"documents": count, "indexes": [i for i in indexes if i["name"] != "_id_"]}
    return found


def _index_spec(index: dict[str, Any]) -> dict[str, Any]:
    spec = {k: v for k, v in index.items() if k not in ("v", "ns")}
    spec["key"] = [[k, v] for k, v in dict(spec["key"]).items()]
    plain: dict[str, Any] = json.loads(json.dumps(spec, default=str))  # JSON for the manifest
    return plain


# --- restore ------------------------------------------------------------------------------


def restore(*, source: Path, data_dir: Path) -> dict[str, Any]:
    """Restore the backup in ``source`` into ``data_dir`` (new or empty); what was restored."""
    if os.environ.get("OBDAL_NATS_URL") or os.environ.get("OBDAL_MONGO_URL"):
        raise BackupError(
            "restore writes the data dir's own servers: unset OBDAL_NATS_URL and OBDAL_MONGO_URL"
            " (for servers of your own, docs/operations.md#backup-and-restore)"
        )
    manifest = _verified(source)
    _require_empty(data_dir, what="data dir")
    started = time.monotonic()
    private_dir(data_dir)
    if manifest["contents"]["admin_token"]:
        shutil.copy2(source / _ADMIN_TOKEN, data_dir / _ADMIN_TOKEN)
        (data_dir / _ADMIN_TOKEN).chmod(0o600)
    nats, mongo = nats_server(data_dir).start(), None
    try:
        mongo = mongo_server(data_dir).start()
        settings = load_settings(IngestSettings, data_dir=data_dir, nats_url=nats.url, mongo_url=mongo.url)
        _restore_mongo(mongo.url, settings.mongo_db, source, manifest["contents"]["mongo_collections"])
        indexed, not_indexed = asyncio.run(_restore_nats_and_index(settings, source, manifest))
    finally:
        if mongo is not None:
            mongo.stop()
        nats.stop()
    return {
        "streams": len(manifest["contents"]["nats_streams"]),
        "collections": len(manifest["contents"]["mongo_collections"]),
        "files_reindexed": indexed,
        "files_not_reindexed": not_indexed,
        "seconds": round(time.monotonic() - started, 1),
    }


def _require_empty(path: Path, *, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{what} {path} is not empty: give a new or empty directory")


def _verified(source: Path) -> dict[str, Any]:
    """The backup's manifest, once every file it lists is there with its sha256; else refused."""
    try:
        manifest: dict[str, Any] = json.loads((source / _MANIFEST).read_text())
        files: dict[str, str] = manifest["files"]
        version = manifest["schema_version"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{source} is not a readable obdal backup ({_MANIFEST}: {exc})") from None
    if version != SCHEMA_VERSION:
        raise BackupError(f"{source}: backup schema {version}, this obdal reads {SCHEMA_VERSION}")
    bad = [name for name, digest in files.items() if not _matches(source / name, digest)]
    if bad:
        raise BackupError(f"{source} is corrupt: missing or changed: {', '.join(sorted(bad))}")
    return manifest


def _matches(path: Path, digest: str) -> bool:
    try:
        return path.is_file() and _sha256(path) == digest
    except OSError:
        return False


def _restore_mongo(url: str, db: str, source: Path, collections: dict[str, dict[str, Any]]) -> None:
    client: MongoClient[RawBSONDocument] = MongoClient(url, document_class=RawBSONDocument)
    with client:
        for name, described in collections.items():
            collection = client[db].get_collection(name, codec_options=_RAW)
            batch: list[RawBSONDocument] = []
            with (source / "mongo" / f"{name}.bson").open("rb") as handle:
                for document in decode_file_iter(handle, _RAW):
                    batch.append(document)
                    if len(batch) == _INSERT_BATCH:
                        collection.insert_many(batch)
                        batch = []
            if batch:
                collection.insert_many(batch)
            models = [_index_model(spec) for spec in described["indexes"]]
            if models:
                collection.create_indexes(models)


def _index_model(spec: dict[str, Any]) -> IndexModel:
    options = {k: v for k, v in spec.items() if k != "key"}
    return IndexModel([(k, v) for k, v in spec["key"]], **options)


async def _restore_nats_and_index(
    settings: IngestSettings, source: Path, manifest: dict[str, Any]
) -> tuple[int, list[str]]:
    nc = await connect(settings.nats_url, name="obdal-restore")
    try:
        js = nc.jetstream()
        for name in manifest["contents"]["nats_streams"]:
            await _restore_stream(nc, js, name, source)
        return await _reindex(js, settings)
    finally:
        await close(nc)


async def _restore_stream(nc: NATS, js: JetStreamContext, name: str, source: Path) -> None:
    config = json.loads((source / "nats" / f"{name}.json").read_text())
    await _api(nc, f"$JS.API.STREAM.CREATE.{name}", config)
    for record in _records(source / "nats" / f"{name}.msgs"):
        message = msgspec.msgpack.decode(record, type=_Message)
        await js.publish(message.subject, message.data, headers=message.headers, stream=name)


async def _ready_files(js: JetStreamContext) -> list[FileStatus]:
    """Every ready file's status (``<app_id>.<file_id>`` keys; others in the bucket are not files)."""
    kv = await js.key_value(subjects.KV_FILES)
    found = []
    for key in await keys_matching(js, subjects.KV_FILES, "*.*"):
        with contextlib.suppress(msgspec.ValidationError):
            record = await read_record(kv, key, FileStatus)
            if record is not None and record[0].status == "ready":
                found.append(record[0])
    return found


async def _reindex(js: JetStreamContext, settings: IngestSettings) -> tuple[int, list[str]]:
    """Index every ready file again from its bytes, as ingest's pipeline did (same chunks, same
    point ids), without touching its status: how many were, and why each other one was not
    (its bytes deleted or replaced while the backup ran, or unreadable now)."""
    files = await _ready_files(js)
    if not files:
        return 0, []
    objects = await js.object_store(subjects.OBJECT_STORE_FILES)
    index = await open_index(settings)
    parsers = ParserPool(timeout_s=settings.parse_timeout_s, memory_mb=settings.parse_memory_mb)
    failed: list[str] = []
    try:
        for status in files:
            try:
                stored = await objects.get(status.object_name)
                chunks, _ = await passages(
                    parsers,
                    settings,
                    stored.data or b"",
                    app_id=status.app_id,
                    file_id=status.file_id,
                    filename=status.filename,
                    content_type=status.content_type,
                    version=status.version,
                    url=status.url,
                )
                await index.add(chunks)
            except (ObjectNotFoundError, ObdalError) as exc:
                failed.append(f"{status.app_id}/{status.file_id}: {exc}")
    finally:
        parsers.close()
        await close_indexes()
    return len(files) - len(failed), failed
