"""Metering's side of its contract: one handler per RPC of :class:`~obdal_common.contract.Metering`.

MongoDB being unreachable is mapped here, once for every RPC, to 503 ``mongo_unavailable``:
the stores below raise pymongo's own errors and never map them themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pymongo.errors import PyMongoError

from obdal_common.contract import Bindings, Metering
from obdal_common.errors import DependencyUnavailable
from obdal_common.health import Check, status_handler
from obdal_common.schemas import SessionDetail, SessionLookup
from obdal_metering.erasure import Eraser
from obdal_metering.sessions import SessionStore
from obdal_metering.store import MeteringStore

__all__ = ["metering_bindings"]

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Rep = TypeVar("Rep")


def _mongo_guarded(handler: Callable[[Req], Awaitable[Rep]]) -> Callable[[Req], Awaitable[Rep]]:
    async def guarded(request: Req) -> Rep:
        try:
            return await handler(request)
        except PyMongoError as exc:
            log.warning("metering store unavailable: %s", exc)
            raise DependencyUnavailable(
                "the metering store (MongoDB) is unavailable, retry shortly", code="mongo_unavailable"
            ) from None

    return guarded


def metering_bindings(
    *, store: MeteringStore, sessions: SessionStore, eraser: Eraser, checks: dict[str, Check]
) -> Bindings:
    """Every metering RPC bound to the store that answers it."""

    async def session(lookup: SessionLookup) -> SessionDetail:
        return await sessions.get(lookup.app_id, lookup.session_id)

    g = _mongo_guarded
    return (
        Bindings(Metering)
        .bind(Metering.status, status_handler("metering", checks))
        .bind(Metering.usage, g(store.usage))
        .bind(Metering.audit, g(store.audit))
        .bind(Metering.sessions, g(sessions.summaries))
        .bind(Metering.session, g(session))
        .bind(Metering.export, g(sessions.export_page))
        .bind(Metering.erase, g(eraser.erase))
        .bind(Metering.retention, g(eraser.retention))
        .bind(Metering.set_retention, g(eraser.set_retention))
    )
