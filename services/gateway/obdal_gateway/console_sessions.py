"""Console sessions: which browser is signed in as which operator, shared by every gateway.

The cookie holds ``<operator_id>.<token>``; NATS KV holds the session under
``<operator_id>.<sha256(token)>`` (a stolen bucket cannot be replayed as cookies), so ending
every session of an operator is one purge of their prefix. A session ends on sign-out, after
``idle`` without a request or ``absolute`` since sign-in, when the operator's password changes
(the session's epoch is then behind the operator's) or when the operator is removed. A token is
minted at every sign-in and never taken from the client, so a planted cookie (session fixation)
is never signed in. Last use is written at most once a minute (a quarter of ``idle`` if that is
shorter), so requests cost one read.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from obdal_common.ids import is_id, new_secret
from obdal_common.messaging import keys_matching, read_record
from obdal_common.schemas import ConsoleSession, OperatorRecord, encode

__all__ = ["COOKIE", "ConsoleSessions", "SignedIn", "csrf_matches"]

# The cookie's name. ``__Host-`` would need Secure, which loopback HTTP (``make run``) lacks.
COOKIE: Final = "obdal_console"
_TOUCH_EVERY: Final = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A live console session and its operator."""

    operator: OperatorRecord
    session: ConsoleSession
    token: str


def _key(operator_id: str, token: str) -> str:
    return f"{operator_id}.{hashlib.sha256(token.encode()).hexdigest()}"


def _split(cookie: str) -> tuple[str, str] | None:
    operator_id, _, token = cookie.partition(".")
    if not is_id("op", operator_id) or len(token) != 43 or not token.isalnum():
        return None
    return operator_id, token


class ConsoleSessions:
    """Sessions in the KV bucket ``bucket`` (``kv`` is its handle; ``js`` lists its keys)."""

    def __init__(
        self, kv: KeyValue, *, js: JetStreamContext, bucket: str, idle: timedelta, absolute: timedelta
    ) -> None:
        self._kv, self._js, self._bucket = kv, js, bucket
        self.idle = idle
        self.absolute = absolute

    async def start(self, operator: OperatorRecord) -> tuple[str, ConsoleSession]:
        """A new session: the cookie's value and the record (with its CSRF token)."""
        token = new_secret(43)
        now = datetime.now(UTC)
        session = ConsoleSession(
            operator_id=operator.operator_id,
            csrf_token=new_secret(43),
            epoch=operator.session_epoch,
            created_at=now,
            last_seen_at=now,
        )
        await self._kv.put(_key(operator.operator_id, token), encode(session))
        return f"{operator.operator_id}.{token}", session

    async def resolve(self, cookie: str, operator: OperatorRecord | None) -> ConsoleSession | None:
        """The live session the cookie names, for its operator (``None``: removed), else ``None``."""
        parts = _split(cookie)
        if parts is None or operator is None or operator.operator_id != parts[0]:
            return None
        key = _key(*parts)
        found = await read_record(self._kv, key, ConsoleSession)
        if found is None:
            return None
        session, revision = found
        now = datetime.now(UTC)
        if (
            session.epoch != operator.session_epoch
            or now - session.last_seen_at > self.idle
            or now - session.created_at > self.absolute
        ):
            await self._kv.delete(key)
            return None
        # Often enough that a session in use never looks idle, however short ``idle`` is.
        if now - session.last_seen_at > min(_TOUCH_EVERY, self.idle / 4):
            session = msgspec.structs.replace(session, last_seen_at=now)
            # Only over the revision read: a sign-out (or end_all) meanwhile stays ended.
            with contextlib.suppress(KeyWrongLastSequenceError):
                await self._kv.update(key, encode(session), last=revision)
        return session

    async def end(self, cookie: str) -> None:
        parts = _split(cookie)
        if parts is not None:
            with contextlib.suppress(KeyNotFoundError):
                await self._kv.purge(_key(*parts))

    async def end_all(self, operator_id: str) -> None:
        """End every session of the operator (password changed, operator removed)."""
        keys = await keys_matching(self._js, self._bucket, f"{operator_id}.*")
        for key in keys:
            await self._kv.purge(key)


def csrf_matches(session: ConsoleSession, presented: str | None) -> bool:
    """Whether the request's ``X-CSRF-Token`` is its session's (constant time)."""
    return presented is not None and hmac.compare_digest(presented.encode(), session.csrf_token.encode())
