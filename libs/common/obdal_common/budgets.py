"""Daily token budgets per key: the chat worker counts, the gateway checks.

Counters live in Redis under ``obdal:tokens:<key_id>:<YYYY-MM-DD>`` (UTC day) and
expire two days later; they only gate requests, exact usage lives in metering.
"""

from __future__ import annotations

from datetime import UTC, datetime

from redis.asyncio import Redis

__all__ = ["add_tokens", "tokens_used", "tokens_used_key"]

_TTL_S = 2 * 86400


def tokens_used_key(key_id: str, now: datetime | None = None) -> str:
    day = (now or datetime.now(UTC)).strftime("%Y-%m-%d")
    return f"obdal:tokens:{key_id}:{day}"


async def add_tokens(redis: Redis, key_id: str, tokens: int) -> None:
    """Count ``tokens`` against today's budget of ``key_id``."""
    name = tokens_used_key(key_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incrby(name, tokens)
        pipe.expire(name, _TTL_S)
        await pipe.execute()


async def tokens_used(redis: Redis, key_id: str) -> int:
    """Tokens ``key_id`` used today (UTC)."""
    value = await redis.get(tokens_used_key(key_id))
    return int(value or 0)
