"""Daily token budgets per key: the chat worker reserves and counts, the gateway checks.

Counters live in Redis under ``obdal:tokens:<key_id>:<YYYY-MM-DD>`` (UTC day) and
expire two days later; they only gate requests, exact usage lives in metering.

Before generating, an answer holds what it may cost (its prompt and its completion bound) in
``obdal:tokens:held:<key_id>``, a sorted set of ``<answer id>:<tokens>`` scored by when the hold
expires: one Lua script refuses when today's count plus every live hold plus this one exceeds
the budget, so concurrent answers cannot together overspend it. Once answered, the hold is
replaced by what the answer used, in one transaction; a worker that dies holding one holds
it until it expires.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import msgspec
from redis.asyncio import Redis

from obdal_common.errors import RateLimited

__all__ = [
    "BudgetExhausted",
    "Reservation",
    "TokenLedger",
    "seconds_to_midnight",
    "tokens_used",
    "tokens_used_key",
]

_TTL_S = 2 * 86400
# KEYS[1]: today's count, KEYS[2]: the holds. ARGV: answer id, tokens, budget, hold ms.
# Returns {granted, used, held} (used and held before this hold).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local used = tonumber(redis.call('GET', KEYS[1]) or 0)
local held = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  held = held + tonumber(string.match(member, ':(%d+)$'))
end
local tokens = tonumber(ARGV[2])
if used + held + tokens > tonumber(ARGV[3]) then
  return {0, used, held}
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1] .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]))
return {1, used, held}
"""


def tokens_used_key(key_id: str, now: datetime | None = None) -> str:
    day = (now or datetime.now(UTC)).strftime("%Y-%m-%d")
    return f"obdal:tokens:{key_id}:{day}"


def _held_key(key_id: str) -> str:
    return f"obdal:tokens:held:{key_id}"


def seconds_to_midnight() -> int:
    """Seconds until the budgets' day ends (00:00 UTC), at least 1."""
    return int(86400 - time.time() % 86400) + 1


async def tokens_used(redis: Redis, key_id: str) -> int:
    """Tokens ``key_id`` used today (UTC), holds of answers in flight not included."""
    value = await redis.get(tokens_used_key(key_id))
    return int(value or 0)


class Reservation(msgspec.Struct, frozen=True, kw_only=True):
    """Tokens one answer holds against its key's budget until it is settled."""

    key_id: str
    member: str


class BudgetExhausted(RateLimited):
    """429 ``token_budget_exhausted``: ``spent`` when what the key used today leaves too little
    (until midnight), not only what its answers in flight hold (a moment); ``used`` is that."""

    def __init__(self, message: str, *, retry_after: int, used: int, spent: bool) -> None:
        super().__init__(message, code="token_budget_exhausted", retry_after=retry_after)
        self.used = used
        self.spent = spent


class TokenLedger:
    """The chat worker's side of the budgets: hold before generating, settle after.

    Redis errors propagate: the caller decides to fail open (docs/security.md).
    """

    def __init__(self, redis: Redis, *, hold_s: float) -> None:
        self._redis = redis
        self._reserve = redis.register_script(_RESERVE)
        self._hold_ms = int(hold_s * 1000)

    async def reserve(self, key_id: str, *, answer_id: str, tokens: int, budget: int) -> Reservation:
        """Hold ``tokens`` of today's ``budget`` of ``key_id``; 429 ``token_budget_exhausted`` if
        what was used and what answers in flight hold leave fewer."""
        granted, used, held = await self._reserve(
            keys=[tokens_used_key(key_id), _held_key(key_id)],
            args=[answer_id, tokens, budget, self._hold_ms],
        )
        if not granted:
            # Refused for what was used: nothing changes before midnight; for what is held: an
            # answer in flight may end any moment and give back what it did not use.
            spent = int(used) + tokens > budget
            left = max(0, budget - int(used) - int(held))
            raise BudgetExhausted(
                f"this answer may use up to {tokens} tokens and this key has {left} of its daily"
                f" budget of {budget} left"
                + (": it resets at 00:00 UTC" if spent else " while its other answers are in progress"),
                retry_after=seconds_to_midnight() if spent else 1,
                used=int(used),
                spent=spent,
            )
        return Reservation(key_id=key_id, member=f"{answer_id}:{tokens}")

    async def settle(self, key_id: str, tokens: int, *, reservation: Reservation | None = None) -> None:
        """Count the ``tokens`` an answer used against today's budget, in place of its hold."""
        name = tokens_used_key(key_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            if reservation is not None:
                pipe.zrem(_held_key(key_id), reservation.member)
            pipe.incrby(name, tokens)
            pipe.expire(name, _TTL_S)
            await pipe.execute()
