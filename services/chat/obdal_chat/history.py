"""Hot session context in Redis: the recent messages of a session, bounded and expiring.

Durable history lives in metering (turn events); this is only what the next
turn needs, namespaced by app so a session id never crosses tenants.
"""

from __future__ import annotations

import json
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from obdal_common.schemas import HistoryErase, HistoryErased

__all__ = ["SessionHistory"]

log = logging.getLogger(__name__)


def history_key(app_id: str, session_id: str) -> str:
    """The Redis list holding a session's recent messages, namespaced by app."""
    return f"obdal:history:{app_id}:{session_id}"


class SessionHistory:
    def __init__(self, redis: Redis, *, max_messages: int, ttl_s: int) -> None:
        self._redis = redis
        self._max = max_messages
        self._ttl = ttl_s

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
        return HistoryErased(sessions_erased=int(removed))
