"""Per-key rate limits in Redis: GCRA (generic cell rate algorithm) in one Lua script.

Atomic across gateway replicas (one script call, Redis's clock), O(1) memory per
key (one timestamp), and smooth: a key with ``rpm`` requests per minute may burst
up to ``rpm`` requests, then gets one every ``60/rpm`` seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["RateDecision", "RateLimiter"]

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
        self._last_warning = 0.0

    async def hit(self, key_id: str, rpm: int) -> RateDecision:
        """Count one request of ``key_id`` against ``rpm`` requests per minute."""
        try:
            allowed, remaining, reset_ms, retry_ms = await self._script(
                keys=[f"obdal:rate:{key_id}"], args=[_WINDOW_MS / rpm, _WINDOW_MS]
            )
        except RedisError as exc:
            now = time.monotonic()
            if now - self._last_warning > 10:  # one line per 10 s, not one per request
                log.warning("rate limiting unavailable, allowing requests (fail-open): %s", exc)
                self._last_warning = now
            return RateDecision(allowed=True, limit=rpm, remaining=None, reset_s=None)
        return RateDecision(
            allowed=bool(allowed),
            limit=rpm,
            remaining=int(remaining),
            reset_s=-(-int(reset_ms) // 1000),
            retry_after_s=max(1, -(-int(retry_ms) // 1000)),
        )
