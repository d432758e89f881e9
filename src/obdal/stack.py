"""``obdal up``: the whole stack in one process on embedded defaults.

Servers the environment does not point at (``OBDAL_NATS_URL``, ``OBDAL_REDIS_URL``,
``OBDAL_MONGO_URL``) are started as child processes; the vector index is Qdrant
Edge in this process unless ``OBDAL_QDRANT_URL`` is set. The four services (or the
ones ``OBDAL_SERVICES`` names) then run together on one event loop. This
single-process layout is the embedded mode's only exception to "nothing assumes
one process": the Edge index can be opened by one process only. With
``OBDAL_TLS_CERT``/``OBDAL_TLS_KEY`` the gateway serves HTTPS (obdal_gateway.main).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from pydantic import Field, field_validator

from obdal.servers import (
    ManagedServer,
    ServerError,
    mongo_server,
    nats_server,
    private_dir,
    record_ports,
    redis_server,
)
from obdal_chat.settings import ChatSettings
from obdal_common.runner import Service, load_or_exit, run, run_services, setup_process
from obdal_common.settings import ObdalSettings, load_settings
from obdal_gateway.main import serve as serve_gateway
from obdal_gateway.operator_token import resolve_admin_token
from obdal_gateway.settings import GatewaySettings
from obdal_ingest.main import serve as serve_ingest
from obdal_ingest.settings import IngestSettings
from obdal_metering.main import serve as serve_metering
from obdal_metering.settings import MeteringSettings
from obdal_retrieval import close_indexes
from obdal_webhooks.main import serve as serve_webhooks
from obdal_webhooks.settings import WebhooksSettings

__all__ = ["StackSettings", "run_stack"]

log = logging.getLogger("obdal")

_ALL_SERVICES = ("metering", "ingest", "webhooks", "chat", "gateway")


class StackSettings(GatewaySettings):
    """The gateway's settings (the banner needs them) plus which services to run."""

    services: str = Field(
        ",".join(_ALL_SERVICES),
        description="Services `obdal up` runs, comma separated; the others run as their own processes",
    )

    @field_validator("services")
    @classmethod
    def _known(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = sorted(set(names) - set(_ALL_SERVICES))
        if unknown or not names:
            raise ValueError(f"expected a comma-separated subset of {', '.join(_ALL_SERVICES)}")
        return ",".join(n for n in _ALL_SERVICES if n in names)


def _start_servers(base: ObdalSettings) -> tuple[list[ManagedServer], dict[str, str]]:
    """Start each server whose URL the environment does not set; return them and their URLs."""
    data = base.data_dir
    wanted: list[tuple[str, Callable[[], ManagedServer]]] = [
        ("nats_url", lambda: nats_server(data)),
        ("redis_url", lambda: redis_server(data)),
        ("mongo_url", lambda: mongo_server(data)),
    ]
    started: list[ManagedServer] = []
    urls: dict[str, str] = {}
    try:
        for field, make in wanted:
            if f"OBDAL_{field.upper()}" in os.environ:
                continue
            server = make().start()
            started.append(server)
            urls[field] = server.url
            # The port, not the url: the url carries the password.
            log.info("started %s on 127.0.0.1:%d (log: %s)", server.name, server.port, server.log_path)
    except BaseException:  # a ServerError, or a Ctrl-C while a server starts: stop those already up
        for server in reversed(started):
            server.stop()
        raise
    record_ports(data, {field.removesuffix("_url"): s.port for field, s in zip(urls, started, strict=True)})
    return started, urls


async def _wait_ready(url: str, task: asyncio.Future[Any]) -> bool:
    # Unverified: this asks our own loopback port whether it serves, by an address the certificate
    # need not name; the certificate was checked against its key at start.
    async with httpx.AsyncClient(timeout=1.0, verify=False) as client:
        while not task.done():
            try:
                if (await client.get(f"{url}/v1/status/live")).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    return False


def _services(urls: dict[str, str], gateway: GatewaySettings, wanted: list[str]) -> dict[str, Service]:
    """The wanted services, in start order. Called before the event loop runs: the chat worker's module
    is imported only if it is wanted (it imports litellm, 7-8 s of CPU, which an `obdal up` running only
    the gateway never needs), and not on the loop, where it would stall the other services' start."""
    every: dict[str, Service] = {
        "metering": lambda stop: serve_metering(load_settings(MeteringSettings, **urls), stop),
        "ingest": lambda stop: serve_ingest(load_settings(IngestSettings, **urls), stop),
        "webhooks": lambda stop: serve_webhooks(load_settings(WebhooksSettings, **urls), stop),
        "gateway": lambda stop: serve_gateway(gateway, stop),
    }
    if "chat" in wanted:
        from obdal_chat.main import serve as serve_chat

        every["chat"] = lambda stop: serve_chat(load_settings(ChatSettings, **urls), stop)
    return {name: every[name] for name in _ALL_SERVICES if name in wanted}


async def _run_services(
    gateway: GatewaySettings, banner: Callable[[str], None], services: dict[str, Service]
) -> None:
    async def started(tasks: Mapping[str, asyncio.Task[None]]) -> None:
        host = "127.0.0.1" if gateway.gateway_host in ("0.0.0.0", "::") else gateway.gateway_host
        base_url = f"{'https' if gateway.tls else 'http'}://{host}:{gateway.gateway_port}"
        if "gateway" in tasks and await _wait_ready(base_url, tasks["gateway"]):
            banner(base_url)

    try:
        await run_services(services, started=started)
    finally:
        await close_indexes()


def run_stack() -> None:
    """Start servers and services; block until Ctrl-C; stop everything, children included."""
    base = load_or_exit(StackSettings, prog="obdal")
    # One process, one provider each: services are told apart by instrumentation scope
    # (tracers and meters are named after their modules, e.g. obdal_chat.pipeline).
    setup_process("obdal", base)
    private_dir(base.data_dir)  # it holds the servers' passwords and data
    token, _ = resolve_admin_token(
        base.admin_token.get_secret_value() if base.admin_token else None, base.data_dir
    )
    from_env = base.admin_token is not None

    def banner(url: str) -> None:
        shown = "(from OBDAL_ADMIN_TOKEN)" if from_env else token
        print(
            f"\nObdal is running at {url}\n"
            f"  console:      {url}/console  (first time: set it up there with the admin token,\n"
            f"                or `obdal operators add EMAIL --every-app owner`)\n"
            f"  API docs:     {url}/docs\n"
            f"  status:       {url}/v1/status\n"
            f"  admin token:  {shown}\n"
            f"  data:         {base.data_dir.resolve()}\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )

    try:
        servers, urls = _start_servers(base)
    except ServerError as exc:
        print(f"obdal: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    try:
        gateway = load_settings(GatewaySettings, **urls)
        services = _services(urls, gateway, base.services.split(","))
        run(_run_services(gateway, banner, services))
    finally:
        record_ports(base.data_dir, {})
        for server in reversed(servers):
            server.stop()
        log.info("stopped")
