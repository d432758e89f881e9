"""A service's health report: each dependency checked, the service ok when all are.

Every service answers its contract's ``status`` RPC with :func:`status_handler` over its
own checks, so ``GET /v1/status`` reads the same shape from each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from nats.aio.client import Client as NATS

from obdal_common.schemas import DependencyStatus, ServiceStatus, StatusQuery

__all__ = ["Check", "nats_check", "ping_check", "status_handler"]

Check = Callable[[], Awaitable[DependencyStatus]]


def nats_check(nc: NATS) -> Check:
    """NATS as this process's connection sees it."""

    async def check() -> DependencyStatus:
        return DependencyStatus(ok=nc.is_connected)

    return check


def ping_check(ping: Callable[[], Awaitable[object]]) -> Check:
    """A dependency that answers ``ping`` (Redis, MongoDB); the error's type when it does not."""

    async def check() -> DependencyStatus:
        try:
            await ping()
        except Exception as exc:  # whatever the client raises when its server is gone
            return DependencyStatus(ok=False, detail=type(exc).__name__)
        return DependencyStatus(ok=True)

    return check


def status_handler(
    service: str, checks: Mapping[str, Check]
) -> Callable[[StatusQuery], Awaitable[ServiceStatus]]:
    """The ``status`` RPC handler of ``service``: every check, in order."""

    async def status(_: StatusQuery) -> ServiceStatus:
        deps = {name: await check() for name, check in checks.items()}
        return ServiceStatus(service=service, ok=all(d.ok for d in deps.values()), dependencies=deps)

    return status
