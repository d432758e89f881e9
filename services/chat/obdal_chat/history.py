"""Hot session state in Redis: a session's owner and its recent messages, bounded and expiring.

Durable history lives in metering (turn events); this is only what the next
turn needs, namespaced by app so a session id never crosses tenants.

A session belongs to the key and end user that started it (``claim``): the owner is
recorded atomically with the first turn and lives as long as the context, so a second
visitor holding the same publishable key cannot read or extend another's conversation
by sending its id (docs/sessions.md, "Who may continue a session").
"""

from __future__ import annotations

import json
import logging
from typing import Literal, TypeAlias, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from obdal_common.schemas import HistoryErase, HistoryErased

__all__ = ["Claim", "SessionHistory"]

log = logging.getLogger(__name__)

# started: the id was free and is now this owner's; continued: it already was;
# unknown: free, but the caller may not start it; foreign: someone else's.
Claim: TypeAlias = Literal["started", "continued", "unknown", "foreign"]

# KEYS[1] owner key; ARGV: owner, may start (1/0), ttl. One round trip, atomic, so two
# first turns racing for one id cannot both own it.
_CLAIM = """
local owner = redis.call('GET', KEYS[1])
if not owner then
  if ARGV[2] == '1' then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[3]))
    return 'started'
  end
  return 'unknown'
end
if owner == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
  return 'continued'
end
return 'foreign'
"""


def history_key(app_id: str, session_id: str) -> str:
    """The Redis list holding a session's recent messages, namespaced by app."""
    return f"obdal:history:{app_id}:{session_id}"


def owner_key(app_id: str, session_id: str) -> str:
    """Who started the session: its key id and end user."""
    return f"obdal:session-owner:{app_id}:{session_id}"


class SessionHistory:
    def __init__(self, redis: Redis, *, max_messages: int, ttl_s: int) -> None:
        self._redis = redis
        self._max = max_messages
        self._ttl = ttl_s
        self._claim = redis.register_script(_CLAIM)

    async def claim(
        self, app_id: str, session_id: str, *, key_id: str, user: str | None, may_start: bool
    ) -> Claim:
        """Record (key, user) as the session's owner if it has none, or check it is the owner.

        Raises Redis's errors: whether to answer without the check is the caller's decision."""
        # The unit separator cannot occur in a key id; "-" marks "no end user" apart from any user.
        owner = f"{key_id}\x1f{'-' if user is None else '=' + user}"
        result = await self._claim(
            keys=[owner_key(app_id, session_id)], args=[owner, "1" if may_start else "0", self._ttl]
        )
        return cast(Claim, result.decode() if isinstance(result, bytes) else result)

    async def load(self, app_id: str, session_id: str) -> list[dict[str, str]]:
        """The session's recent messages, oldest first. Redis down means no context, not an error."""
        if self._max == 0:
            return []
        try:
            raw = await self._redis.lrange(history_key(app_id, session_id), -self._max, -1)
        except RedisError as exc:
            log.warning("session history unavailable (answering without it): %s", exc)
            return []
        return [json.loads(item) for item in raw]

    async def append(self, app_id: str, session_id: str, question: str, answer: str) -> None:
        """Record one turn and refresh the session's expiry."""
        if self._max == 0:
            return
        key = history_key(app_id, session_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(
                    key,
                    json.dumps({"role": "user", "content": question}),
                    json.dumps({"role": "assistant", "content": answer}),
                )
                pipe.ltrim(key, -self._max, -1)
                pipe.expire(key, self._ttl)
                await pipe.execute()
        except RedisError as exc:
            log.warning("could not store session history: %s", exc)

    async def erase(self, request: HistoryErase) -> HistoryErased:
        """Forget the sessions' context (the ``erase_history`` RPC). Unlike reading and writing
        it, erasing must not fail silently: Redis's errors reach the bindings, which answer 503."""
        if not request.session_ids:
            return HistoryErased(sessions_erased=0)
        removed = await self._redis.delete(*(history_key(request.app_id, s) for s in request.session_ids))
        # The owner goes too: an erased session's id is free again.
        await self._redis.delete(*(owner_key(request.app_id, s) for s in request.session_ids))
        return HistoryErased(sessions_erased=int(removed))
