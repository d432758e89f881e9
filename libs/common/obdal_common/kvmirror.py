"""A NATS KV bucket mirrored in memory by a watch, so every replica sees changes at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import msgspec
from nats.js.kv import KeyValue

from obdal_common.messaging import read_record
from obdal_common.schemas import decode, encode

__all__ = ["KVMirror"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class KVMirror(Generic[T]):
    """Every record of one KV bucket, decoded as ``typ``, kept current by a watch.

    ``on_change`` is told the key of every record the watch adds, changes or removes (for
    what a reader derives from the records and must rebuild). ``keys`` narrows the mirror to the
    keys a NATS subject pattern matches, for a bucket that also holds other entries."""

    def __init__(
        self,
        kv: KeyValue,
        typ: type[T],
        *,
        on_change: Callable[[str], None] | None = None,
        keys: str = ">",
    ) -> None:
        self._kv = kv
        self._typ = typ
        self._on_change = on_change
        self._keys = keys
        self._records: dict[str, T] = {}
        self._watch_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load every record and keep following changes."""
        watcher = await self._kv.watch(self._keys)
        async for entry in watcher:
            if entry is None:  # end of the initial values
                break
            self._apply(entry.key, entry.value, entry.operation)
        self._watch_task = asyncio.create_task(self._follow(watcher))

    async def stop(self) -> None:
        if self._watch_task:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        while True:
            try:
                entry = await watcher.updates(timeout=None)  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnects: keep going
                log.warning("watch of %s interrupted: %s", self._typ.__name__, exc)
                await asyncio.sleep(0.5)
                continue
            if entry is not None:
                self._apply(entry.key, entry.value, entry.operation)

    def _apply(self, key: str, value: bytes | None, operation: str | None) -> None:
        if operation in ("DEL", "PURGE") or not value:
            self._records.pop(key, None)
        else:
            try:
                self._records[key] = decode(value, self._typ)
            except msgspec.ValidationError:
                log.error("ignoring malformed %s record %s", self._typ.__name__, key)
                return
        if self._on_change is not None:
            self._on_change(key)

    def values(self) -> Iterable[T]:
        return self._records.values()

    async def get(self, key: str) -> T | None:
        """A record, from memory or (just written by another process) from KV."""
        record = self._records.get(key)
        if record is not None:
            return record
        return await self.fetch(key)

    def cached(self, key: str) -> T | None:
        """A record as the watch last delivered it (no I/O)."""
        return self._records.get(key)

    async def fetch(self, key: str) -> T | None:
        """A record read from KV now (and remembered), even if memory has one."""
        found = await read_record(self._kv, key, self._typ)
        if found is None:
            return None
        self._records[key] = found[0]
        return found[0]

    async def put(self, key: str, record: T) -> None:
        await self._kv.put(key, encode(record))
        self._records[key] = record
