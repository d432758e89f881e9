"""Per-key rate limits in Redis: GCRA (generic cell rate algorithm) in one Lua script.

Atomic across gateway replicas (one script call, Redis's clock), O(1) memory per
key (one timestamp), and smooth: a key with ``rpm`` requests per minute may burst
up to ``rpm`` requests, then gets one every ``60/rpm`` seconds.

Answers in flight per key are capped too (:class:`AnswerSlots`): each holds a lease in
Redis, renewed while its stream runs, released when it ends, expiring if its gateway dies.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from obdal_common.errors import RateLimited

__all__ = ["AnswerLease", "AnswerSlots", "RateDecision", "RateLimiter"]

log = logging.getLogger(__name__)

_WINDOW_MS = 60_000
# KEYS[1]: the key's theoretical arrival time (TAT), ms. ARGV[1]: emission interval, ms.
# Returns {allowed, remaining, reset_ms, retry_after_ms}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > window then
  return {0, 0, tat - now, new_tat - now - window}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now))
return {1, math.floor((window - (new_tat - now)) / interval), new_tat - now, 0}
"""

# A lease outlives its gateway by at most this long; a running stream renews it three times as often.
_LEASE_MS = 60_000
# KEYS[1]: the key's answers in flight, request ids scored by lease expiry (ms). ARGV: request id,
# cap, lease ms. Takes or renews the lease; returns 0 when the cap is reached without it.
_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


class _Warnings:
    """Redis down: one warning line per 10 s, not one per request."""

    def __init__(self) -> None:
        self._last = 0.0

    def warn(self, message: str, exc: RedisError) -> None:
        now = time.monotonic()
        if now - self._last > 10:
            log.warning("%s: %s", message, exc)
            self._last = now


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int | None
    reset_s: int | None
    retry_after_s: int = 0

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` headers (remaining and reset only when Redis answered)."""
        headers = {"X-RateLimit-Limit": str(self.limit)}
        if self.remaining is not None and self.reset_s is not None:
            headers["X-RateLimit-Remaining"] = str(self.remaining)
            headers["X-RateLimit-Reset"] = str(self.reset_s)
        return headers


class RateLimiter:
    """Fails open: with Redis down, requests pass (logged), so the API stays up."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_GCRA)
        self._warnings = _Warnings()

    async def hit(self, key_id: str, rpm: int) -> RateDecision:
        """Count one request of ``key_id`` against ``rpm`` requests per minute."""
        try:
            allowed, remaining, reset_ms, retry_ms = await self._script(
                keys=[f"obdal:rate:{key_id}"], args=[_WINDOW_MS / rpm, _WINDOW_MS]
            )
        except RedisError as exc:
            self._warnings.warn("rate limiting unavailable, allowing requests (fail-open)", exc)
            return RateDecision(allowed=True, limit=rpm, remaining=None, reset_s=None)
        return RateDecision(
            allowed=bool(allowed),
            limit=rpm,
            remaining=int(remaining),
            reset_s=-(-int(reset_ms) // 1000),
            retry_after_s=max(1, -(-int(retry_ms) // 1000)),
        )


class AnswerLease:
    """One answer's place among its key's answers in flight."""

    def __init__(self, slots: AnswerSlots | None, key_id: str, request_id: str) -> None:
        self._slots = slots
        self._key_id = key_id
        self._request_id = request_id
        self._renewed = time.monotonic()

    async def renew(self) -> None:
        """Keep the lease while the answer runs (called as its replies arrive; cheap when recent)."""
        if self._slots is None or time.monotonic() - self._renewed < _LEASE_MS / 3000:
            return
        self._renewed = time.monotonic()
        await self._slots.take(self._key_id, self._request_id)

    async def release(self) -> None:
        """Give the place back (idempotent)."""
        slots, self._slots = self._slots, None
        if slots is not None:
            await slots.give_back(self._key_id, self._request_id)


class AnswerSlots:
    """At most ``cap`` answers in flight per key, across gateway replicas. Fails open."""

    def __init__(self, redis: Redis, *, cap: int) -> None:
        self._redis = redis
        self._script = redis.register_script(_LEASE)
        self._cap = cap
        self._warnings = _Warnings()

    async def acquire(self, key_id: str, request_id: str) -> AnswerLease:
        """A lease for the answer ``request_id``; 429 ``too_many_concurrent_answers`` at the cap."""
        if not await self.take(key_id, request_id):
            raise RateLimited(
                f"this key already has {self._cap} answers in progress; retry when one has ended",
                code="too_many_concurrent_answers",
                retry_after=1,
            )
        return AnswerLease(self, key_id, request_id)

    async def take(self, key_id: str, request_id: str) -> bool:
        """Take or renew the lease of ``request_id``; ``False`` at the cap."""
        try:
            return bool(
                await self._script(keys=[_slots_key(key_id)], args=[request_id, self._cap, _LEASE_MS])
            )
        except RedisError as exc:
            self._warnings.warn("answer slots unavailable, allowing answers (fail-open)", exc)
            return True

    async def give_back(self, key_id: str, request_id: str) -> None:
        try:
            await self._redis.zrem(_slots_key(key_id), request_id)
        except RedisError as exc:  # the lease expires by itself
            self._warnings.warn("answer slots unavailable, a lease is left to expire", exc)


def _slots_key(key_id: str) -> str:
    return f"obdal:answers:{key_id}"
