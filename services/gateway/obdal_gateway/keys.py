"""API keys: format, hashing, and the key registry (NATS KV, watched, cached in memory).

A key reads ``obd_sk_<id>_<secret>`` (secret, for servers) or
``obd_pk_<id>_<secret>`` (publishable, for browsers). Only the SHA-256 of the
whole key is stored: the secret has ~190 bits of entropy, so a fast hash is
not brute-forceable, and lookups stay O(1) by id. Comparison is constant-time.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import msgspec
from nats.js.kv import KeyValue
from redis.asyncio import Redis
from redis.exceptions import RedisError

from obdal_common.errors import Conflict, NotFound, Unauthorized
from obdal_common.ids import new_secret
from obdal_common.kvmirror import KVMirror
from obdal_common.schemas import KeyKind, KeyRecord
from obdal_gateway.origins import origin_allowed

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_SCOPES",
    "PUBLISHABLE_SCOPES",
    "KeyRegistry",
    "hash_key",
    "new_key",
    "parse_key",
]

ALL_SCOPES: Final = frozenset(
    {
        "chat",
        "usage:read",
        "sessions:read",
        "sessions:write",
        "files:read",
        "files:write",
        "webhooks",
        # Answering customers as a person (docs/handoff.md): apart from sessions:write, which also
        # erases, so a support desk's key (or a console editor) may reply without erasing.
        "handoff",
        # The whole app as one archive (GET /v1/export): everything the other scopes read, at once.
        "export",
    }
)
# A publishable key is in public web pages: it may only ask (write-only scopes), never read
# an app's files, usage or conversations.
PUBLISHABLE_SCOPES: Final = frozenset({"chat"})
DEFAULT_SCOPES: Final[dict[KeyKind, tuple[str, ...]]] = {
    "secret": tuple(sorted(ALL_SCOPES)),
    "publishable": tuple(sorted(PUBLISHABLE_SCOPES)),
}
_PREFIX: Final[dict[KeyKind, str]] = {"secret": "sk", "publishable": "pk"}
_KEY = re.compile(r"^obd_(sk|pk)_([A-Za-z0-9]{16})_([A-Za-z0-9]{32})$")
_NO_HASH = "0" * 64
_LAST_USED = "obdal:key_last_used"
_TOUCH_EVERY_S = 60.0


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _token(kind: KeyKind, ident: str) -> str:
    return f"obd_{_PREFIX[kind]}_{ident}_{new_secret(32)}"


def new_key(kind: KeyKind) -> tuple[str, str]:
    """A fresh ``(key_id, key)``; the key is shown to its owner once and never stored."""
    ident = new_secret(16)
    return f"key_{ident}", _token(kind, ident)


def parse_key(key: str) -> tuple[KeyKind, str] | None:
    """``(kind, key_id)`` of a well-formed key, else ``None``."""
    match = _KEY.match(key)
    if not match:
        return None
    kind: KeyKind = "secret" if match.group(1) == "sk" else "publishable"
    return kind, f"key_{match.group(2)}"


def _matched(
    record: KeyRecord | None, kind: KeyKind, presented: str
) -> Literal["current", "previous"] | None:
    """Which secret of ``record`` the presented key's hash is; both compared, in constant time,
    whether or not there is a record."""
    current = hmac.compare_digest(record.secret_hash if record else _NO_HASH, presented)
    previous = hmac.compare_digest((record.previous_secret_hash if record else None) or _NO_HASH, presented)
    if record is None or record.kind != kind:
        return None
    if current:
        return "current"
    return "previous" if previous else None


class KeyRegistry:
    """Keys in NATS KV, mirrored in memory by a watch so every replica sees changes at once."""

    def __init__(self, kv: KeyValue, redis: Redis) -> None:
        self._records = KVMirror(kv, KeyRecord)
        self._redis = redis
        self._touched: dict[str, float] = {}

    async def start(self) -> None:
        """Load every key and keep following changes."""
        await self._records.start()

    async def stop(self) -> None:
        await self._records.stop()

    async def get(self, key_id: str) -> KeyRecord | None:
        """A key record, from memory or (just created elsewhere) from KV."""
        return await self._records.get(key_id)

    def cached(self, key_id: str) -> KeyRecord | None:
        """A key record as this gateway's watch last saw it (no I/O)."""
        return self._records.cached(key_id)

    async def put(self, record: KeyRecord) -> None:
        await self._records.put(record.key_id, record)

    def for_app(self, app_id: str) -> list[KeyRecord]:
        """Every key of one app (and only that app), oldest first."""
        return sorted((k for k in self._records.values() if k.app_id == app_id), key=lambda k: k.created_at)

    async def verify(self, key: str) -> KeyRecord:
        """The live record of a presented key, or :class:`Unauthorized`.

        The previous secret of a rotated key is accepted until its grace period ends.
        """
        parsed = parse_key(key)
        if parsed is None:
            raise Unauthorized("invalid API key", code="invalid_api_key")
        kind, key_id = parsed
        presented = hash_key(key)
        record = self._records.cached(key_id)
        matched = _matched(record, kind, presented)
        if matched is None:
            # Unknown id or wrong secret, the same work either way (one KV read, the same
            # comparisons) so timing does not tell ids apart; the read also catches a key created
            # or rotated by another gateway a moment ago.
            record = await self._records.fetch(key_id)
            matched = _matched(record, kind, presented)
        if record is None or matched is None:
            raise Unauthorized("invalid API key", code="invalid_api_key")
        now = datetime.now(UTC)
        if matched == "previous" and (
            record.previous_valid_until is None or record.previous_valid_until <= now
        ):
            raise Unauthorized("this key was rotated; use its new secret", code="key_rotated")
        if record.revoked_at is not None:
            raise Unauthorized("this API key has been revoked", code="key_revoked")
        if record.expires_at is not None and record.expires_at <= now:
            raise Unauthorized("this API key has expired", code="key_expired")
        return record

    async def existing(self, key_id: str) -> KeyRecord:
        """A key record, or :class:`NotFound`."""
        record = await self.get(key_id)
        if record is None:
            raise NotFound(f"no key {key_id}", code="key_not_found")
        return record

    async def revoke(self, key_id: str) -> KeyRecord:
        """Revoke at once; every replica sees it through its watch."""
        record = await self.existing(key_id)
        if record.revoked_at is None:
            record = msgspec.structs.replace(record, revoked_at=datetime.now(UTC))
            await self.put(record)
        return record

    async def rotate(self, key_id: str, *, grace: timedelta) -> tuple[KeyRecord, str]:
        """A new secret for ``key_id``; the current one keeps working for ``grace``."""
        record = await self.existing(key_id)
        if record.revoked_at is not None:
            raise Conflict("a revoked key cannot be rotated", code="key_revoked")
        secret = _token(record.kind, key_id.removeprefix("key_"))
        keep_previous = grace.total_seconds() > 0
        record = msgspec.structs.replace(
            record,
            secret_hash=hash_key(secret),
            previous_secret_hash=record.secret_hash if keep_previous else None,
            previous_valid_until=datetime.now(UTC) + grace if keep_previous else None,
        )
        await self.put(record)
        return record, secret

    def allows_origin(self, origin: str) -> bool:
        """Whether any live key allows ``origin`` (CORS preflights carry no key).

        Never raises: ``origin_allowed`` skips (and logs) a stored entry it cannot
        parse, so one key's bad record cannot fail the preflights of every app.
        """
        now = datetime.now(UTC)
        return any(
            origin_allowed(origin, k.allowed_origins)
            for k in self._records.values()
            if k.revoked_at is None and (k.expires_at is None or k.expires_at > now)
        )

    async def touch(self, key_id: str) -> None:
        """Record that the key was used (at most once per minute per gateway)."""
        now = time.monotonic()
        if now - self._touched.get(key_id, -_TOUCH_EVERY_S) < _TOUCH_EVERY_S:
            return
        self._touched[key_id] = now
        # Last-used is informational: never fail a request for it.
        with contextlib.suppress(RedisError):
            await self._redis.hset(_LAST_USED, key_id, datetime.now(UTC).isoformat())

    async def last_used(self, key_ids: list[str]) -> dict[str, str | None]:
        """Last-used times (ISO 8601) of keys; ``None`` when unknown or Redis is down."""
        if not key_ids:
            return {}
        try:
            values = await self._redis.hmget(_LAST_USED, key_ids)
        except RedisError:
            return dict.fromkeys(key_ids)
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in zip(key_ids, values, strict=True)}
