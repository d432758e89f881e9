"""Running services as a process: settings, logging, tracing, metrics, signals, clean stop.

One runner for every way Obdal runs: each ``obdal-<service>`` entry point runs one
service with :func:`run_service`; ``obdal up`` runs several on one loop with the same
:func:`run_services`, so a service behaves the same (stops on the same signals, reports
its failure the same way, takes the others down with it) whichever starts it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import uvloop

from obdal_common.errors import ConfigurationError, DependencyUnavailable, ObdalError
from obdal_common.logs import configure_logging
from obdal_common.metrics import serve_metrics, setup_metrics
from obdal_common.settings import ObdalSettings, load_settings
from obdal_common.telemetry import setup_tracing

__all__ = [
    "Service",
    "load_or_exit",
    "run",
    "run_service",
    "run_services",
    "setup_process",
    "wait_for_dependency",
]

S = TypeVar("S", bound=ObdalSettings)
Service = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""A service's body: runs until the event is set, then returns once it has stopped cleanly."""

log = logging.getLogger(__name__)


async def wait_for_dependency(
    attempt: Callable[[], Awaitable[None]],
    *,
    what: str,
    errors: tuple[type[Exception], ...],
    within_s: float,
    stop: asyncio.Event,
    every_s: float = 1.0,
) -> None:
    """Run ``attempt`` (e.g. creating a store's indexes) until it succeeds, waiting for a server
    that starts after the service or is restarting; after ``within_s``, or once the service is
    stopping, raise 503 naming ``what`` and the last of ``errors``."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            await attempt()
            return
        except errors as exc:
            if stop.is_set() or time.monotonic() > deadline:
                raise DependencyUnavailable(f"{what} is unreachable: {exc}") from None
            log.warning("waiting for %s: %s", what, exc)
            await asyncio.sleep(every_s)


def load_or_exit(settings_cls: type[S], *, prog: str, **overrides: Any) -> S:
    """The settings, or exit 2 with the message naming the bad variable."""
    try:
        return load_settings(settings_cls, **overrides)
    except ConfigurationError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None


def setup_process(name: str, settings: ObdalSettings) -> None:
    """Logging, tracing and metrics for this process (once, whatever runs in it)."""
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    setup_tracing(name, settings)
    setup_metrics(name)
    serve_metrics(settings)


def _report(task: asyncio.Task[None]) -> None:
    if task.cancelled() or task.exception() is None:
        return
    error = task.exception()
    if isinstance(error, ObdalError):
        log.error("%s stopped: %s", task.get_name(), error.message)
    else:
        log.error("%s stopped", task.get_name(), exc_info=error)


async def run_services(
    services: Mapping[str, Service],
    *,
    started: Callable[[Mapping[str, asyncio.Task[None]]], Awaitable[None]] | None = None,
) -> None:
    """Run ``services`` until SIGINT/SIGTERM or until any of them stops by itself (then stop
    them all); exit 1 if any failed. ``started`` runs once they are all launched (a banner)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = {name: asyncio.create_task(body(stop), name=name) for name, body in services.items()}
    for task in tasks.values():
        task.add_done_callback(_report)
    try:
        if started is not None:
            await started(tasks)
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({stopping, *tasks.values()}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    finally:
        stop.set()
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
    if any(isinstance(r, BaseException) for r in results):
        raise SystemExit(1)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on libuv's event loop (less CPU per socket event than asyncio's)."""
    uvloop.run(main)


def run_service(
    name: str, settings_cls: type[S], serve: Callable[[S, asyncio.Event], Awaitable[None]]
) -> None:
    """Entry point body for ``obdal-<name>``: run ``serve`` until SIGINT/SIGTERM."""
    settings = load_or_exit(settings_cls, prog=f"obdal-{name}")
    setup_process(f"obdal-{name}", settings)

    async def body(stop: asyncio.Event) -> None:
        await serve(settings, stop)

    run(run_services({name: body}))
