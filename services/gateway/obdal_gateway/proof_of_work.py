"""Proof of work for publishable keys: a flood of questions costs its sender CPU, a visitor a moment.

A key with ``proof_of_work`` answers a question only with a solved challenge
(``GET /v1/widget/challenge``, the ALTCHA v2 protocol through the ``altcha`` package): find a
counter whose PBKDF2-SHA-256 key, under the challenge's nonce and salt, starts with the signed
prefix. The widget solves it with the browser's WebCrypto (native PBKDF2) before the question goes;
the gateway re-derives the one key the counter names, checks the challenge's HMAC, its expiry, the
key it was made for, and that it was not used before (a Redis ``SET NX`` for as long as it could
still be valid). Measured by ``bench/pow.py`` (docs/security.md#proof-of-work).

The HMAC secret is shared by every gateway through Redis (made once, ``SET NX``), so a challenge
made by one is checked by another. Redis down fails closed (503): without it neither the secret
nor the replay check exists, and an unchecked key would be open to the flood this guards against.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from altcha import Payload, create_challenge, verify_solution
from redis.asyncio import Redis
from redis.exceptions import RedisError

from obdal_common.errors import DependencyUnavailable, Forbidden

__all__ = ["ALGORITHM", "ProofOfWork"]

ALGORITHM = "PBKDF2/SHA-256"
_SECRET_KEY = "obdal:pow:secret"
_USED_PREFIX = "obdal:pow:used:"
# Re-read from Redis this often: a secret replaced there (Redis restarted) is picked up.
_SECRET_TTL_S = 60.0


def _unavailable() -> DependencyUnavailable:
    return DependencyUnavailable(
        "proof-of-work challenges are unavailable: Redis does not answer", code="redis_unavailable"
    )


def _refused(code: str, message: str) -> Forbidden:
    return Forbidden(message, code=code)


@dataclass
class ProofOfWork:
    redis: Redis
    cost: int
    expires_s: int
    _secret: str | None = field(default=None, init=False)
    _read_at: float = field(default=0.0, init=False)

    async def _hmac_secret(self) -> str:
        if self._secret is not None and time.monotonic() - self._read_at < _SECRET_TTL_S:
            return self._secret
        try:
            await self.redis.set(_SECRET_KEY, secrets.token_hex(32), nx=True)
            stored = await self.redis.get(_SECRET_KEY)
        except RedisError:
            raise _unavailable() from None
        if stored is None:  # deleted between the two calls: next time
            raise _unavailable()
        self._secret = stored.decode() if isinstance(stored, bytes) else str(stored)
        self._read_at = time.monotonic()
        return self._secret

    async def challenge(self, key_id: str) -> dict[str, Any]:
        """A fresh challenge for ``key_id``, signed, valid ``expires_s`` seconds."""
        made = create_challenge(
            ALGORITHM,
            self.cost,
            expires_at=int(time.time()) + self.expires_s,
            data={"key_id": key_id},
            hmac_secret=await self._hmac_secret(),
        )
        return made.to_dict()

    async def check(self, key_id: str, payload: str | None) -> None:
        """Return if ``payload`` solves a challenge made for ``key_id`` that was not used yet;
        raise 403 ``proof_of_work_required``, ``…_invalid``, ``…_expired`` or ``…_used``."""
        if not payload:
            raise _refused(
                "proof_of_work_required",
                "this key asks for proof of work: solve GET /v1/widget/challenge and send it as altcha",
            )
        try:
            parsed = Payload.from_base64(payload)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
            raise _refused("proof_of_work_invalid", "altcha is not a solved challenge") from None
        result = verify_solution(parsed, await self._hmac_secret())
        if result.expired:
            raise _refused("proof_of_work_expired", "the challenge has expired: solve a new one")
        data = parsed.challenge.parameters.data or {}
        if not result.verified or data.get("key_id") != key_id:
            raise _refused("proof_of_work_invalid", "altcha does not solve a challenge made for this key")
        try:
            first = await self.redis.set(
                _USED_PREFIX + str(parsed.challenge.signature), "1", nx=True, ex=self.expires_s + 5
            )
        except RedisError:
            raise _unavailable() from None
        if not first:
            raise _refused("proof_of_work_used", "this challenge was used already: solve a new one")
