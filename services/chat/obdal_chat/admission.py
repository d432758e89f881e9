"""Who may continue a session: checked before a worker accepts a turn.

The policy (docs/sessions.md, "Who may continue a session"):

- a session belongs to the key and end user of its first turn;
- a secret key (the app's own servers) may name any new id (the product page's
  ``sess_9Rna21``); naming a session that another key or end user started is a 409;
- a publishable key (a web page, so any visitor holds it) cannot choose ids: one it did
  not start, or another visitor's, silently becomes a new conversation with a fresh id,
  which the answer's ``end`` carries, so the widget follows it and nothing tells the
  caller whether the id existed.

If Redis is down the owner cannot be checked: a publishable key's named session becomes a
new one (safe, and there is no context to read anyway), a secret key's goes ahead.
"""

from __future__ import annotations

import logging

import msgspec
from redis.exceptions import RedisError

from obdal_chat.history import SessionHistory
from obdal_common.errors import Conflict
from obdal_common.ids import new_id
from obdal_common.schemas import ChatRequest

__all__ = ["admit_session"]

log = logging.getLogger(__name__)


async def admit_session(req: ChatRequest, *, history: SessionHistory) -> tuple[ChatRequest, bool]:
    """``req`` as it may go ahead (perhaps in a new session), and whether it starts its session;
    raise :class:`Conflict` if refused."""
    publishable = req.key_kind == "publishable"
    # Only ids the gateway generated, or a secret key chose, may start a session.
    may_start = not (publishable and req.session_given)
    try:
        claim = await history.claim(
            req.app_id, req.session_id, key_id=req.key_id, user=req.user, may_start=may_start
        )
    except RedisError as exc:
        log.warning("session owners unavailable (checking none): %s", exc)
        claim = "unknown" if publishable and req.session_given else "continued"
    if claim in ("started", "continued"):
        return req, claim == "started"
    if not publishable:
        raise Conflict("this session was started by another key or end user", code="session_not_yours")
    fresh = msgspec.structs.replace(req, session_id=new_id("sess"), session_given=False)
    try:
        await history.claim(
            fresh.app_id, fresh.session_id, key_id=fresh.key_id, user=fresh.user, may_start=True
        )
    except RedisError as exc:
        log.warning("could not record the owner of a new session: %s", exc)
    return fresh, True
