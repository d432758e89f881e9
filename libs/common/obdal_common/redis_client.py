"""The services' Redis client."""

from __future__ import annotations

import redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.driver_info import DriverInfo

__all__ = ["redis_client"]

# Given, so that redis-py does not read its version from package metadata for every new
# pooled connection (about 3 ms each, paid at every burst of concurrent requests).
_DRIVER = DriverInfo(lib_version=redis.__version__)
_TIMEOUT_S = 2.0


def redis_client(url: str, *, max_connections: int = 128) -> Redis:
    """A pooled client with short timeouts: Redis trouble must fail fast, not hold requests.

    Past ``max_connections`` commands wait (up to the timeout) for a free connection,
    instead of failing with "Too many connections" as the default pool does past 100.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=_TIMEOUT_S,
        socket_timeout=_TIMEOUT_S,
        socket_connect_timeout=_TIMEOUT_S,
        driver_info=_DRIVER,
    )
    return Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections
