"""The services' Redis client."""

from __future__ import annotations

import redis
from redis.asyncio import Redis
from redis.driver_info import DriverInfo

__all__ = ["redis_client"]

# Given, so that redis-py does not read its version from package metadata for every new
# pooled connection (about 3 ms each, paid at every burst of concurrent requests).
_DRIVER = DriverInfo(lib_version=redis.__version__)


def redis_client(url: str) -> Redis:
    """A pooled client with short timeouts: Redis trouble must fail fast, not hold requests."""
    return Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, driver_info=_DRIVER)
