"""Failed console sign-ins, counted in Redis per account and per client address.

An account takes ``per_account`` failures in ``window``, an address ``per_ip`` (one office shares
an address, so that one is larger); then sign-in is refused with 429 and when to retry, before the
password is even checked, whether or not the next guess is right. An attempt is counted, in one
step with the check, before its password is checked, so guesses sent at once cannot all slip
past the check while the first is still being verified; a good sign-in then takes its attempt
back from the address and clears its account's count. Redis down fails closed (503): unlike a
rate limit, this guard is what keeps a password from being guessed, and signing in is rare enough
to wait for Redis.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from redis.asyncio import Redis
from redis.exceptions import RedisError

from obdal_common.errors import DependencyUnavailable, RateLimited

__all__ = ["SignInThrottle"]

_PREFIX = "obdal:signin:"


def _unavailable() -> DependencyUnavailable:
    return DependencyUnavailable("sign-in is unavailable: Redis does not answer", code="redis_unavailable")


# Counts one attempt against the account and the address, unless one has used its allowance:
# then counts nothing and answers which one (1, 2) and how long its window still runs.
_ATTEMPT = """
for i = 1, 2 do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count >= tonumber(ARGV[i]) then
    return {i, redis.call('TTL', KEYS[i])}
  end
end
for i = 1, 2 do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[3], 'NX')
end
return {0, 0}
"""
# A good sign-in: the account starts afresh, and the address gets its attempt back.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DECR', KEYS[2])
end
return 0
"""


class SignInThrottle:
    def __init__(self, redis: Redis, *, per_account: int, per_ip: int, window: timedelta) -> None:
        self._limits = (per_account, per_ip)
        self._window_s = int(window.total_seconds())
        self._attempt = redis.register_script(_ATTEMPT)
        self._succeeded = redis.register_script(_SUCCEEDED)

    @staticmethod
    def _keys(email: str, client: str | None) -> list[str]:
        account = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        return [f"{_PREFIX}account:{account}", f"{_PREFIX}ip:{client or 'unknown'}"]

    async def attempt(self, email: str, client: str | None) -> None:
        """Count a sign-in attempt; 429 ``sign_in_throttled`` (counting nothing) if the account or
        the address failed too often lately."""
        try:
            which, ttl = await self._attempt(
                keys=self._keys(email, client), args=[*self._limits, self._window_s]
            )
        except RedisError:
            raise _unavailable() from None
        if int(which):
            wait_s = max(int(ttl), 1)
            minutes = -(-wait_s // 60)
            whose = "this account" if int(which) == 1 else "your network address"
            raise RateLimited(
                f"too many failed sign-ins for {whose}; try again in {minutes} minute"
                f"{'s' if minutes != 1 else ''}",
                code="sign_in_throttled",
                retry_after=wait_s,
            )

    async def succeeded(self, email: str, client: str | None) -> None:
        """The attempt was good: it does not count as a failure."""
        try:
            await self._succeeded(keys=self._keys(email, client), args=[])
        except RedisError:
            raise _unavailable() from None
