"""Running a service as a process: settings, logging, tracing, metrics, signals, clean stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import uvloop

from obdal_common.errors import ConfigurationError, DependencyUnavailable
from obdal_common.logs import configure_logging
from obdal_common.metrics import serve_metrics, setup_metrics
from obdal_common.settings import ObdalSettings, load_settings
from obdal_common.telemetry import setup_tracing

__all__ = ["ServeFn", "run_service"]

S = TypeVar("S", bound=ObdalSettings)
ServeFn = Callable[[S, asyncio.Event], Awaitable[None]]

log = logging.getLogger(__name__)


def run_service(
    name: str, settings_cls: type[S], serve: Callable[[S, asyncio.Event], Awaitable[None]]
) -> None:
    """Entry point body for ``obdal-<name>``: run ``serve`` until SIGINT/SIGTERM."""
    try:
        settings = load_settings(settings_cls)
    except ConfigurationError as exc:
        print(f"obdal-{name}: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    setup_tracing(f"obdal-{name}", settings)
    setup_metrics(f"obdal-{name}")
    serve_metrics(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await serve(settings, stop)
        finally:
            # Only chat and ingest open an index; the others never import retrieval.
            if "obdal_common.retrieval.factory" in sys.modules:
                from obdal_common.retrieval import close_indexes

                await close_indexes()

    try:
        uvloop.run(main())  # libuv's event loop: less CPU per socket event than asyncio's
    except DependencyUnavailable as exc:
        log.error("obdal-%s cannot start: %s", name, exc.message)
        raise SystemExit(1) from None
