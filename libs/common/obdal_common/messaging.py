"""NATS helpers: connecting, declaring streams and buckets, publishing events, pull consumers,
erasing what was consumed or deleted.

Request/reply between services is :mod:`obdal_common.contract`'s.

Erasure: JetStream's message delete (``STREAM.MSG.DELETE`` without ``no_erase``, what
``js.delete_msg`` sends) overwrites the message's record in its block file with random bytes.
Everything else that removes a message (an ack on a work queue, a purge, ``max_age``, an
Object Store delete, which purges the object's chunks) only drops it from the index: its bytes
stay in the ``.blk`` file until the whole block is removed, which for a quiet stream's last
block is never. Measured on nats-server 2.15: a marker put in an object or an event is still
in ``msgs/1.blk`` after a purge, and nowhere on disk after an erase (2.5-4.7 ms per small
message, ~15 ms per 128 KB chunk: the server overwrites and syncs the record).
So content leaves the disk only through :func:`erase_msg` and :func:`erase_object`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, KeyNotFoundError, NotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE, OBJ_STREAM_TEMPLATE, ObjectStore

from obdal_common import subjects
from obdal_common.errors import DependencyUnavailable
from obdal_common.schemas import decode, encode
from obdal_common.telemetry import inject_headers

__all__ = [
    "close",
    "connect",
    "decode_or_term",
    "ensure_topology",
    "erase_msg",
    "erase_object",
    "key_value",
    "keys_matching",
    "publish_event",
    "pull_each",
    "read_record",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_EVENTS_MAX_AGE_S = 14 * 24 * 3600
_DEDUPE_WINDOW_S = 600
_FIRST_CONNECT_S = 10.0
_PUBLISH_TIMEOUT_S = 2.0
_TOPOLOGY_WAIT_S = 60.0
_PUBLISH_RETRY_MAX_S = 2.0
_ERASE_WINDOW = 64


async def connect(url: str, *, name: str) -> NATS:
    """Connect to NATS, reconnecting forever once connected; fail clearly if unreachable."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats: %s", exc)

    async def on_disconnect() -> None:
        log.warning("nats: disconnected, reconnecting")

    async def on_reconnect() -> None:
        log.info("nats: reconnected")

    try:
        # With unlimited reconnects nats-py also retries the first connect forever:
        # bound it, so a wrong URL fails start-up instead of hanging.
        return await asyncio.wait_for(
            _connect(url, name, on_error, on_disconnect, on_reconnect), _FIRST_CONNECT_S
        )
    except Exception as exc:  # nats raises several unrelated types when unreachable
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
        raise DependencyUnavailable(f"cannot connect to NATS at {url}: {reason}") from exc


async def _connect(
    url: str,
    name: str,
    on_error: Callable[[Exception], Awaitable[None]],
    on_disconnect: Callable[[], Awaitable[None]],
    on_reconnect: Callable[[], Awaitable[None]],
) -> NATS:
    return await nats.connect(
        servers=[u.strip() for u in url.split(",") if u.strip()],
        name=name,
        connect_timeout=3,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        drain_timeout=5,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


async def close(nc: NATS) -> None:
    """Drain (finish in-flight messages) and close; never raises during shutdown."""
    try:
        await nc.drain()
    except Exception as exc:  # NATS already gone or reconnecting: just close
        log.debug("nats drain failed: %s", exc)
        with contextlib.suppress(Exception):
            await nc.close()


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError:
        # The stream exists (maybe created by a racing service) with another config: bring it to ours.
        await js.update_stream(config)


async def key_value(
    js: JetStreamContext, bucket: str, *, ttl_s: float | None = None, replicas: int = 1
) -> KeyValue:
    """Open (creating if needed, on ``replicas`` servers) a key-value bucket, its entries
    expiring after ``ttl_s`` if given; safe when services race to create it."""
    try:
        return await js.key_value(bucket)
    except NotFoundError:
        pass
    config = KeyValueConfig(bucket=bucket, history=1, ttl=ttl_s, replicas=replicas)
    try:
        return await js.create_key_value(config)
    except BadRequestError:
        return await js.key_value(bucket)


async def read_record(kv: KeyValue, key: str, typ: type[T]) -> tuple[T, int] | None:
    """The record at ``key`` decoded as ``typ`` with its revision (for a compare-and-set), or
    ``None`` when there is none (never written, deleted or purged)."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    if not entry.value or entry.revision is None:
        return None
    return decode(entry.value, typ), entry.revision


async def keys_matching(js: JetStreamContext, bucket: str, pattern: str) -> list[str]:
    """The keys of ``bucket`` matching ``pattern`` (``*``/``>`` wildcards), purged ones included
    (they read as absent), from the stream's own count of messages per subject: one request,
    filtered by the server. ``KeyValue.keys()`` is a watch over the whole bucket, filtered by
    substring in the client, and its end is guessed (it missed keys being written meanwhile:
    obdal_ingest.statuses measured it); the server lists up to 100,000 subjects in one answer."""
    prefix = f"$KV.{bucket}."
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}{pattern}")
    return sorted(subject.removeprefix(prefix) for subject in info.state.subjects or {})


async def ensure_topology(
    js: JetStreamContext, *, replicas: int = 1, wait_s: float = _TOPOLOGY_WAIT_S
) -> None:
    """Declare every stream, bucket and object store Obdal uses (idempotent), each kept on
    ``replicas`` servers of a JetStream cluster (``OBDAL_NATS_REPLICAS``; 3 survives one
    server lost, docs/reliability.md). A stream declared with fewer is raised to ``replicas``;
    a bucket keeps the replicas it was created with (docs/scaling.md).

    A cluster answers before its JetStream has a leader, and creating a replicated stream then
    times out (bench/soak.py saw 3 of 5 starts on a fresh cluster fail so): every declaration is
    tried again, all of them idempotent, for up to ``wait_s`` seconds; then
    :class:`DependencyUnavailable`."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            await _declare_topology(js, replicas=replicas)
            return
        except (NatsTimeoutError, NoRespondersError, ServiceUnavailableError) as exc:
            if time.monotonic() > deadline:
                raise DependencyUnavailable(
                    f"JetStream did not accept Obdal's streams within {wait_s:.0f} s: {exc!r}",
                    code="nats_unavailable",
                ) from exc
            log.warning("declaring JetStream streams: %r (a cluster still electing?), retrying", exc)
            await asyncio.sleep(1.0)


async def _declare_topology(js: JetStreamContext, *, replicas: int) -> None:
    await _ensure_stream(
        js,
        StreamConfig(
            name=subjects.INGEST_STREAM,
            subjects=[subjects.INGEST_JOB],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
        ),
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            subjects=list(subjects.EVENTS_SUBJECTS),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=_EVENTS_MAX_AGE_S,
            duplicate_window=_DEDUPE_WINDOW_S,
        ),
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=subjects.HOOKS_STREAM,
            subjects=list(subjects.HOOKS_SUBJECTS),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=_EVENTS_MAX_AGE_S,
            duplicate_window=_DEDUPE_WINDOW_S,
        ),
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=subjects.CHAT_PARTIAL_STREAM,
            subjects=[subjects.CHAT_PARTIAL],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=_DEDUPE_WINDOW_S,
        ),
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=subjects.DEADLETTER_STREAM,
            subjects=list(subjects.DEADLETTER_SUBJECTS),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=_EVENTS_MAX_AGE_S,
        ),
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=subjects.SESSION_KEYS_STREAM,
            subjects=list(subjects.SESSION_KEYS_SUBJECTS),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_msgs_per_subject=1,
        ),
    )
    for bucket in (
        subjects.KV_APPS,
        subjects.KV_KEYS,
        subjects.KV_FILES,
        subjects.KV_ANSWERS,
        subjects.KV_OPERATORS,
        subjects.KV_WEBHOOKS,
        subjects.KV_HANDOFFS,
        subjects.KV_INDEX_GENERATIONS,
        subjects.KV_SOURCES,
        subjects.KV_SOURCE_PAGES,
    ):
        await key_value(js, bucket, replicas=replicas)
    await key_value(js, subjects.KV_CONSOLE_SESSIONS, ttl_s=subjects.CONSOLE_SESSION_TTL_S, replicas=replicas)
    try:
        await js.object_store(subjects.OBJECT_STORE_FILES)
    except NotFoundError:
        # Passing an ObjectStoreConfig with the bucket fails in nats-py 2.16 (NOTES.md).
        with contextlib.suppress(BadRequestError):
            await js.create_object_store(subjects.OBJECT_STORE_FILES, replicas=replicas)


async def publish_event(
    js: JetStreamContext, subject: str, event: Any, *, msg_id: str, give_up_after: float
) -> None:
    """Publish ``event`` to JetStream until the server acknowledges it, for up to ``give_up_after`` s.

    Retries ride out a NATS restart or reconnect; every try carries the same
    ``Nats-Msg-Id``, so a try whose acknowledgement was lost is not stored twice.
    Raises :class:`DependencyUnavailable` once the time is up.
    """
    data = encode(event)
    headers = inject_headers({"Nats-Msg-Id": msg_id})
    deadline = time.monotonic() + give_up_after
    delay = 0.1
    while True:
        try:
            await js.publish(subject, data, headers=headers, timeout=_PUBLISH_TIMEOUT_S)
            return
        except Exception as exc:  # timeouts, no responders (JetStream restarting), connection errors
            if time.monotonic() + delay > deadline:
                raise DependencyUnavailable(
                    f"could not publish {subject} {msg_id}: {exc!r}", code="nats_unavailable"
                ) from exc
            log.warning("publishing %s %s failed (%r), retrying", subject, msg_id, exc)
        await asyncio.sleep(delay)
        delay = min(_PUBLISH_RETRY_MAX_S, delay * 2)


async def pull_batches(
    sub: JetStreamContext.PullSubscription,
    handle: Callable[[list[Msg]], Awaitable[None]],
    *,
    stop: asyncio.Event,
    batch: int,
    wait_s: float = 1.0,
    what: str,
) -> None:
    """Fetch up to ``batch`` messages at a time (waiting ``wait_s`` to fill one) and ``handle``
    them until ``stop``; then unsubscribe.

    Fetching rides out NATS reconnecting. A handler that fails (typically NATS lost
    before its ack) leaves its messages unacked: JetStream redelivers them, and the
    consumer carries on instead of dying with it.
    """
    while not stop.is_set():
        try:
            msgs = await sub.fetch(batch, timeout=wait_s)
        except (TimeoutError, NatsTimeoutError):
            continue
        except Exception as exc:  # NATS reconnecting: wait and retry
            log.warning("%s fetch failed: %s", what, exc)
            await asyncio.sleep(1.0)
            continue
        try:
            await handle(msgs)
        except Exception as exc:
            log.warning("%s interrupted, it will be redelivered: %r", what, exc)
    await sub.unsubscribe()


async def pull_each(
    sub: JetStreamContext.PullSubscription,
    handle: Callable[[Msg], Awaitable[None]],
    *,
    stop: asyncio.Event,
    batch: int,
    what: str,
) -> None:
    """:func:`pull_batches` handling one message at a time: one that fails does not stop the
    rest of its batch."""

    async def each(msgs: list[Msg]) -> None:
        for msg in msgs:
            try:
                await handle(msg)
            except Exception as exc:
                log.warning("%s interrupted, it will be redelivered: %r", what, exc)

    await pull_batches(sub, each, stop=stop, batch=batch, what=what)


async def decode_or_term(msg: Msg, kind: type[T], *, what: str) -> T | None:
    """The JetStream message as ``kind``; a malformed one is logged and terminated (``None``),
    since no redelivery can mend it."""
    try:
        return decode(msg.data, kind)
    except msgspec.ValidationError as exc:
        log.error("dropping malformed %s: %s", what, exc)
        await msg.term()
        return None


async def erase_msg(js: JetStreamContext, msg: Msg) -> None:
    """Delete a consumed JetStream message from its stream, overwriting its bytes on disk."""
    meta = msg.metadata
    with contextlib.suppress(NotFoundError):  # erased already (this is a redelivery)
        await js.delete_msg(meta.stream, meta.sequence.stream)


async def erase_object(js: JetStreamContext, objects: ObjectStore, *, bucket: str, name: str) -> None:
    """Delete an object, overwriting each of its chunks on disk first (the store's own delete
    only purges them). Raises ``NotFoundError`` if there is no such object."""
    info = await objects.get_info(name)
    stream = OBJ_STREAM_TEMPLATE.format(bucket=bucket)
    chunks = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=info.nuid)
    seqs: list[int] = []
    while True:
        try:
            chunk = await js.get_msg(stream, seq=seqs[-1] + 1 if seqs else 1, subject=chunks, next=True)
        except NotFoundError:  # no chunk left after the last one found
            break
        if chunk.seq is None:  # typed optional by nats-py; a stored message always has one
            break
        seqs.append(chunk.seq)
    # Erases run one after another on the server (~15 ms per 128 KB chunk); sending a window
    # of them at once still saves the round trips: 20 MB in 2.5 s instead of 4.5 s.
    for start in range(0, len(seqs), _ERASE_WINDOW):
        await asyncio.gather(*(js.delete_msg(stream, s) for s in seqs[start : start + _ERASE_WINDOW]))
    await objects.delete(name)
