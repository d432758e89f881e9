"""API keys: format, hashing, and the key registry (NATS KV, watched, cached in memory).

A key reads ``obd_sk_<id>_<secret>`` (secret, for servers) or
``obd_pk_<id>_<secret>`` (publishable, for browsers). Only the SHA-256 of the
whole key is stored: the secret has ~190 bits of entropy, so a fast hash is
not brute-forceable, and lookups stay O(1) by id. Comparison is constant-time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
from datetime import UTC, datetime
from typing import Final

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from obdal_common.errors import NotFound, Unauthorized
from obdal_common.ids import new_secret
from obdal_common.schemas import KeyKind, KeyRecord, decode, encode

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_SCOPES",
    "KeyRegistry",
    "hash_key",
    "new_key",
    "parse_key",
]

log = logging.getLogger(__name__)

ALL_SCOPES: Final = frozenset(
    {"chat", "usage:read", "sessions:read", "sessions:write", "files:read", "files:write"}
)
DEFAULT_SCOPES: Final[dict[KeyKind, tuple[str, ...]]] = {
    "secret": tuple(sorted(ALL_SCOPES)),
    "publishable": ("chat",),
}
_PREFIX: Final[dict[KeyKind, str]] = {"secret": "sk", "publishable": "pk"}
_KEY = re.compile(r"^obd_(sk|pk)_([A-Za-z0-9]{16})_([A-Za-z0-9]{32})$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(kind: KeyKind) -> tuple[str, str]:
    """A fresh ``(key_id, key)``; the key is shown to its owner once and never stored."""
    ident = new_secret(16)
    return f"key_{ident}", f"obd_{_PREFIX[kind]}_{ident}_{new_secret(32)}"


def parse_key(key: str) -> tuple[KeyKind, str] | None:
    """``(kind, key_id)`` of a well-formed key, else ``None``."""
    match = _KEY.match(key)
    if not match:
        return None
    kind: KeyKind = "secret" if match.group(1) == "sk" else "publishable"
    return kind, f"key_{match.group(2)}"


class KeyRegistry:
    """Keys in NATS KV, mirrored in memory by a watch so every replica sees changes at once."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._cache: dict[str, KeyRecord] = {}
        self._watch_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load every key and keep following changes."""
        watcher = await self._kv.watchall()
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
                log.warning("key watch interrupted: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if entry is not None:
                self._apply(entry.key, entry.value, entry.operation)

    def _apply(self, key: str, value: bytes | None, operation: str | None) -> None:
        if operation in ("DEL", "PURGE") or not value:
            self._cache.pop(key, None)
            return
        try:
            self._cache[key] = decode(value, KeyRecord)
        except msgspec.ValidationError:
            log.error("ignoring malformed key record %s", key)

    async def get(self, key_id: str) -> KeyRecord | None:
        """A key record, from memory or (just created elsewhere) from KV."""
        record = self._cache.get(key_id)
        if record is not None:
            return record
        try:
            entry = await self._kv.get(key_id)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        record = decode(entry.value, KeyRecord)
        self._cache[key_id] = record
        return record

    async def put(self, record: KeyRecord) -> None:
        await self._kv.put(record.key_id, encode(record))
        self._cache[record.key_id] = record

    def for_app(self, app_id: str) -> list[KeyRecord]:
        """Every key of one app (and only that app), oldest first."""
        return sorted((k for k in self._cache.values() if k.app_id == app_id), key=lambda k: k.created_at)

    async def verify(self, key: str) -> KeyRecord:
        """The live record of a presented key, or :class:`Unauthorized`."""
        parsed = parse_key(key)
        if parsed is None:
            raise Unauthorized("invalid API key", code="invalid_api_key")
        kind, key_id = parsed
        record = await self.get(key_id)
        # Compare even when unknown so timing does not tell ids apart.
        expected = record.secret_hash if record else "0" * 64
        if not hmac.compare_digest(expected, hash_key(key)) or record is None or record.kind != kind:
            raise Unauthorized("invalid API key", code="invalid_api_key")
        now = datetime.now(UTC)
        if record.revoked_at is not None:
            raise Unauthorized("this API key has been revoked", code="key_revoked")
        if record.expires_at is not None and record.expires_at <= now:
            raise Unauthorized("this API key has expired", code="key_expired")
        return record

    async def revoke(self, key_id: str) -> KeyRecord:
        record = await self.get(key_id)
        if record is None:
            raise NotFound(f"no key {key_id}", code="key_not_found")
        if record.revoked_at is None:
            record = msgspec.structs.replace(record, revoked_at=datetime.now(UTC))
            await self.put(record)
        return record
