"""``obdal-gateway``: the HTTP gateway process.

It serves HTTPS itself when ``OBDAL_TLS_CERT``/``OBDAL_TLS_KEY`` are set (a single machine without a
proxy, ``make run``), else plain HTTP for a TLS-terminating proxy in front (deploy/Caddyfile, an Ingress).
Plain HTTP on an HTTPS port is not answered, not even with a redirect: the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from datetime import timedelta

import uvicorn

from obdal_common import subjects
from obdal_common.contract import Chat, Ingest, Metering, NatsBus, Webhooks
from obdal_common.errors import ConfigurationError
from obdal_common.messaging import close as close_nats
from obdal_common.messaging import connect, ensure_topology, key_value
from obdal_common.redis_client import redis_client
from obdal_common.runner import run_service
from obdal_gateway.app import create_app
from obdal_gateway.apps import AppRegistry
from obdal_gateway.audit import AuditLog
from obdal_gateway.console_sessions import ConsoleSessions
from obdal_gateway.keys import KeyRegistry
from obdal_gateway.operator_token import resolve_admin_token
from obdal_gateway.operators import OperatorRegistry
from obdal_gateway.proof_of_work import ProofOfWork
from obdal_gateway.ratelimit import AnswerSlots, RateLimiter
from obdal_gateway.relay import ChatRelay
from obdal_gateway.session_streams import SessionStreams
from obdal_gateway.settings import GatewaySettings
from obdal_gateway.signin_throttle import SignInThrottle
from obdal_gateway.state import Gateway

__all__ = ["main", "serve"]

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """Uvicorn without its own signal handling: the caller decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: GatewaySettings, stop: asyncio.Event) -> None:
    """Run the gateway until ``stop`` is set."""
    token, generated = resolve_admin_token(
        settings.admin_token.get_secret_value() if settings.admin_token else None, settings.data_dir
    )
    if generated:
        log.warning("generated an admin token, kept in %s", settings.data_dir / "admin_token")
    nc = await connect(settings.nats_url, name="obdal-gateway")
    redis = redis_client(settings.redis_url)
    keys: KeyRegistry | None = None
    operators: OperatorRegistry | None = None
    try:
        js = nc.jetstream()
        await ensure_topology(js, replicas=settings.nats_replicas)
        bus = NatsBus(nc)
        keys = KeyRegistry(await key_value(js, subjects.KV_KEYS), redis)
        await keys.start()
        operators = OperatorRegistry(await key_value(js, subjects.KV_OPERATORS))
        await operators.start()
        gateway = Gateway(
            settings=settings,
            admin_token=token,
            nc=nc,
            js=js,
            redis=redis,
            keys=keys,
            apps=AppRegistry(await key_value(js, subjects.KV_APPS), js=js, bucket=subjects.KV_APPS),
            objects=await js.object_store(subjects.OBJECT_STORE_FILES),
            relay=ChatRelay(
                nc,
                accept_timeout=settings.chat_accept_timeout_s,
                idle_timeout=settings.chat_idle_timeout_s,
                publish_retry_s=settings.event_publish_retry_s,
                slots=AnswerSlots(redis, cap=settings.max_concurrent_answers_per_key),
            ),
            audit=AuditLog(js),
            limiter=RateLimiter(redis),
            pow=ProofOfWork(redis, cost=settings.pow_cost, expires_s=settings.pow_expires_s),
            operators=operators,
            console_sessions=ConsoleSessions(
                await key_value(js, subjects.KV_CONSOLE_SESSIONS, ttl_s=subjects.CONSOLE_SESSION_TTL_S),
                js=js,
                bucket=subjects.KV_CONSOLE_SESSIONS,
                idle=timedelta(minutes=settings.console_idle_minutes),
                absolute=timedelta(hours=settings.console_session_hours),
            ),
            session_streams=SessionStreams(per_session=settings.max_streams_per_session),
            signin_throttle=SignInThrottle(
                redis,
                per_account=settings.signin_failures_per_account,
                per_ip=settings.signin_failures_per_ip,
                window=timedelta(minutes=settings.signin_window_minutes),
            ),
            metering=Metering(bus),
            chat=Chat(bus),
            ingest=Ingest(bus),
            webhooks=Webhooks(bus),
        )
        server = _Server(
            uvicorn.Config(
                create_app(gateway),
                host=settings.gateway_host,
                port=settings.gateway_port,
                log_config=None,
                access_log=False,
                # uvicorn would believe X-Forwarded-For from loopback; obdal_gateway.clients decides.
                proxy_headers=False,
                timeout_graceful_shutdown=5,
                # Loaded once, at start (settings checked they load): a renewed certificate needs a restart.
                ssl_certfile=settings.tls_cert,
                ssl_keyfile=settings.tls_key,
            )
        )
        try:
            # Bind here so a busy port is a clear start-up error, not uvicorn's exit().
            sock = socket.create_server((settings.gateway_host, settings.gateway_port), reuse_port=False)
        except OSError as exc:
            where = f"{settings.gateway_host}:{settings.gateway_port}"
            raise ConfigurationError(f"the gateway cannot listen on {where}: {exc.strerror}") from None
        task = asyncio.create_task(server.serve(sockets=[sock]))
        scheme = "https" if settings.tls else "http"
        log.info("gateway listening on %s://%s:%d", scheme, settings.gateway_host, settings.gateway_port)
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        stopping.cancel()
        await task
    finally:
        if keys is not None:
            await keys.stop()
        if operators is not None:
            await operators.stop()
        await redis.aclose()
        await close_nats(nc)


def main() -> None:
    """Console entry point."""
    run_service("gateway", GatewaySettings, serve)
