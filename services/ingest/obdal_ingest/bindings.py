"""Ingest's side of its contract: one handler per RPC of :class:`~obdal_common.contract.Ingest`.

NATS failing under a handler (KV, Object Store or JetStream unreachable, a restart) is
mapped here, once for every RPC, to 503 ``nats_unavailable``, as the gateway answers its
own NATS failures; the lifecycle below raises nats-py's errors and never maps them itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors

from obdal_common.contract import Bindings, Ingest
from obdal_common.errors import DependencyUnavailable
from obdal_common.health import Check, status_handler
from obdal_ingest.files import FileLifecycle

__all__ = ["ingest_bindings"]

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Rep = TypeVar("Rep")


def _nats_guarded(handler: Callable[[Req], Awaitable[Rep]]) -> Callable[[Req], Awaitable[Rep]]:
    async def guarded(request: Req) -> Rep:
        try:
            return await handler(request)
        except nats.errors.Error as exc:
            log.warning("NATS unavailable to the file lifecycle: %r", exc)
            raise DependencyUnavailable(
                "the message bus is unavailable, retry shortly", code="nats_unavailable"
            ) from None

    return guarded


def ingest_bindings(*, files: FileLifecycle, checks: dict[str, Check]) -> Bindings:
    """Every ingest RPC bound to what answers it."""
    g = _nats_guarded
    return (
        Bindings(Ingest)
        .bind(Ingest.status, status_handler("ingest", checks))
        .bind(Ingest.upload, g(files.upload))
        .bind(Ingest.replace, g(files.replace))
        .bind(Ingest.get, g(files.get))
        .bind(Ingest.list, g(files.list_files))
        .bind(Ingest.outcome, g(files.outcome))
        .bind(Ingest.delete, g(files.delete))
        .bind(Ingest.delete_app, g(files.delete_app))
    )
