"""Console operators: accounts (NATS KV, watched), argon2id passwords, roles per app.

A role is per app, or for every app under ``"*"`` (the instance's owners, who may also create
apps). What each role may do is a set of API scopes (:data:`ROLE_SCOPES`) plus, on the admin
API, a least role per route (``opt={"role": ...}``): the API enforces both, whatever the console
shows. Passwords are hashed with argon2id at argon2-cffi's defaults (64 MiB, 3 passes, about
50 ms on this machine), in a worker thread so a sign-in never stalls the event loop; an unknown
e-mail is checked against a dummy hash so the two take the same time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import anyio.to_thread
import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from obdal_common.errors import BadRequest, Conflict, NotFound
from obdal_common.ids import is_id, new_id
from obdal_common.kvmirror import KVMirror
from obdal_common.schemas import OperatorRecord, OperatorRole

__all__ = [
    "ALL_APPS",
    "MIN_PASSWORD_CHARS",
    "ROLE_SCOPES",
    "OperatorRegistry",
    "at_least",
    "normal_email",
    "public_operator",
    "role_on",
]

ALL_APPS: Final = "*"
MIN_PASSWORD_CHARS: Final = 12
_MAX_PASSWORD_CHARS: Final = 1024
_ROLE_RANK: Final[dict[OperatorRole, int]] = {"viewer": 0, "editor": 1, "owner": 2}
# The API scopes of each role on its app. Viewers read conversations, usage and the audit log;
# editors also change documents, curated answers, settings and webhooks, may ask (the playground)
# and answer customers handed to a person; owners also erase conversations and end users, and
# export the whole app.
_EDITOR: Final = frozenset(
    {"usage:read", "sessions:read", "files:read", "files:write", "chat", "webhooks", "handoff"}
)
ROLE_SCOPES: Final[dict[OperatorRole, frozenset[str]]] = {
    "viewer": frozenset({"usage:read", "sessions:read", "files:read"}),
    "editor": _EDITOR,
    "owner": _EDITOR | {"sessions:write", "export"},
}
_hasher = PasswordHasher()
_DUMMY_HASH: Final = _hasher.hash("not a password anyone has")


def normal_email(email: str) -> str:
    """The e-mail as stored and compared: trimmed, lower case; 400 unless it looks like one."""
    value = email.strip().lower()
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or len(value) > 254 or any(c.isspace() for c in value):
        raise BadRequest("that is not an e-mail address", code="invalid_email")
    return value


def _checked_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise BadRequest(
            f"a password needs at least {MIN_PASSWORD_CHARS} characters", code="password_too_short"
        )
    if len(password) > _MAX_PASSWORD_CHARS:
        raise BadRequest(f"a password has at most {_MAX_PASSWORD_CHARS} characters", code="password_too_long")
    return password


def at_least(role: OperatorRole | None, least: OperatorRole) -> bool:
    """Whether ``role`` (``None``: no role) may do what ``least`` may."""
    return role is not None and _ROLE_RANK[role] >= _ROLE_RANK[least]


def role_on(roles: Mapping[str, OperatorRole], app_id: str) -> OperatorRole | None:
    """An operator's role on ``app_id``, given their ``roles``: the higher of their role there and
    their role on every app."""
    best: OperatorRole | None = None
    for role in (roles.get(app_id), roles.get(ALL_APPS)):
        if role is not None and not at_least(best, role):
            best = role
    return best


def public_operator(operator: OperatorRecord) -> dict[str, Any]:
    """An operator as the API shows them: never the password's hash."""
    return {
        "operator_id": operator.operator_id,
        "email": operator.email,
        "name": operator.name,
        "roles": dict(operator.roles),
        "created_at": operator.created_at.isoformat(),
        "password_changed_at": operator.password_changed_at.isoformat(),
    }


def _record_key(operator_id: str) -> str:
    return f"operator.{operator_id}"


def _email_key(email: str) -> str:
    return "email." + hashlib.sha256(email.encode()).hexdigest()


class OperatorRegistry:
    """Operators in NATS KV, mirrored in memory by a watch (every gateway sees a removal at once)."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._records = KVMirror(kv, OperatorRecord, keys="operator.*")

    async def start(self) -> None:
        await self._records.start()

    async def stop(self) -> None:
        await self._records.stop()

    def all(self) -> list[OperatorRecord]:
        """Every operator, oldest first."""
        return sorted(self._records.values(), key=lambda r: r.created_at)

    def any(self) -> bool:
        return bool(self.all())

    async def get(self, operator_id: str) -> OperatorRecord | None:
        if not is_id("op", operator_id):
            return None
        return await self._records.get(_record_key(operator_id))

    def cached(self, operator_id: str) -> OperatorRecord | None:
        return self._records.cached(_record_key(operator_id)) if is_id("op", operator_id) else None

    async def existing(self, operator_id: str) -> OperatorRecord:
        record = await self.get(operator_id)
        if record is None:
            raise NotFound(f"no operator {operator_id}", code="operator_not_found")
        return record

    async def by_email(self, email: str) -> OperatorRecord | None:
        try:
            entry = await self._kv.get(_email_key(email))
        except KeyNotFoundError:
            return None
        return await self.get(entry.value.decode()) if entry.value else None

    async def create(
        self, *, email: str, name: str, password: str, roles: dict[str, OperatorRole]
    ) -> OperatorRecord:
        """A new operator; 409 ``operator_exists`` if the e-mail is taken."""
        email = normal_email(email)
        password_hash = await anyio.to_thread.run_sync(_hasher.hash, _checked_password(password))
        now = datetime.now(UTC)
        record = OperatorRecord(
            operator_id=new_id("op"),
            email=email,
            name=name.strip() or email,
            password_hash=password_hash,
            roles=roles,
            created_at=now,
            password_changed_at=now,
        )
        try:
            # The e-mail's index entry first, created atomically: a second operator with it fails here.
            await self._kv.create(_email_key(email), record.operator_id.encode())
        except KeyWrongLastSequenceError:
            raise Conflict(f"an operator with the e-mail {email} exists", code="operator_exists") from None
        await self.put(record)
        return record

    async def put(self, record: OperatorRecord) -> None:
        await self._records.put(_record_key(record.operator_id), record)

    async def delete(self, operator_id: str) -> OperatorRecord:
        record = await self.existing(operator_id)
        await self._kv.delete(_record_key(operator_id))
        await self._kv.delete(_email_key(record.email))
        return record

    async def drop_app(self, app_id: str) -> int:
        """Take a deleted app out of every operator's roles; how many operators had one there."""
        holders = [r for r in self.all() if app_id in r.roles]
        for record in holders:
            roles = {a: role for a, role in record.roles.items() if a != app_id}
            await self.put(msgspec.structs.replace(record, roles=roles))
        return len(holders)

    async def verify(self, email: str, password: str) -> OperatorRecord | None:
        """The operator whose e-mail and password these are, else ``None`` (same cost either way)."""
        try:
            email = normal_email(email)
        except BadRequest:
            email = ""
        record = await self.by_email(email) if email else None
        try:
            await anyio.to_thread.run_sync(
                _hasher.verify,
                record.password_hash if record else _DUMMY_HASH,
                password[:_MAX_PASSWORD_CHARS],
            )
        except (VerificationError, InvalidHashError):
            return None
        return record

    async def set_password(self, record: OperatorRecord, password: str) -> OperatorRecord:
        """A new password; the epoch moves on, which ends every console session of the operator."""
        password_hash = await anyio.to_thread.run_sync(_hasher.hash, _checked_password(password))
        updated = msgspec.structs.replace(
            record,
            password_hash=password_hash,
            password_changed_at=datetime.now(UTC),
            session_epoch=record.session_epoch + 1,
        )
        await self.put(updated)
        return updated
