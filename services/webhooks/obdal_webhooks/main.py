"""``obdal-webhooks``: an app's events fanned out to its endpoints, signed and delivered durably."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from obdal_common import subjects
from obdal_common.contract import NatsBus
from obdal_common.health import nats_check, ping_check
from obdal_common.messaging import close as close_nats
from obdal_common.messaging import connect, ensure_topology, key_value
from obdal_common.outbound import OutboundClient, OutboundPolicy, resolver_from_setting
from obdal_common.runner import run_service, wait_for_dependency
from obdal_common.schemas import DependencyStatus
from obdal_webhooks.bindings import webhooks_bindings
from obdal_webhooks.deliveries import DeliveryStore
from obdal_webhooks.dispatcher import Dispatcher
from obdal_webhooks.endpoints import EndpointStore
from obdal_webhooks.fanout import Fanout
from obdal_webhooks.handoff_mail import Mailer, MailStore
from obdal_webhooks.sender import Sender
from obdal_webhooks.settings import WebhooksSettings

__all__ = ["USER_AGENT", "main", "serve"]

log = logging.getLogger(__name__)

USER_AGENT = "Obdal-Webhooks/0.1 (+https://obdal.dev/webhooks)"


async def serve(settings: WebhooksSettings, stop: asyncio.Event) -> None:
    """Run the webhooks service until ``stop`` is set."""
    nc = await connect(settings.nats_url, name="obdal-webhooks")
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo_url, tz_aware=True, serverSelectionTimeoutMS=3000
    )
    policy = OutboundPolicy.from_setting(
        settings.outbound_allow, timeout_s=settings.webhook_timeout_s, max_redirects=0
    )
    client = OutboundClient(
        policy, user_agent=USER_AGENT, resolver=resolver_from_setting(settings.outbound_nameserver)
    )
    try:
        js = nc.jetstream()
        await ensure_topology(js, replicas=settings.nats_replicas)
        endpoints = EndpointStore(
            kv=await key_value(js, subjects.KV_WEBHOOKS),
            js=js,
            client=client,
            allow_http=settings.webhook_allow_http,
            max_per_app=settings.max_webhooks_per_app,
        )
        deliveries = DeliveryStore(mongo, settings.mongo_db)
        mails = MailStore(mongo, settings.mongo_db)

        async def ensure_indexes() -> None:
            await deliveries.ensure_indexes()
            await mails.ensure_indexes()

        await wait_for_dependency(
            ensure_indexes,
            what=f"MongoDB at {settings.mongo_url}",
            errors=(PyMongoError,),
            within_s=settings.webhooks_mongo_wait_s,
            stop=stop,
        )
        # The gateway's bucket, read only: each app's handoff settings (where its e-mail goes).
        mailer = Mailer(settings, js=js, apps=await key_value(js, subjects.KV_APPS), store=mails)
        fanout = Fanout(js, endpoints, deliveries, mailer)
        dispatcher = Dispatcher(
            settings,
            js=js,
            endpoints=endpoints,
            deliveries=deliveries,
            sender=Sender(client, max_response_bytes=settings.webhook_max_response_bytes),
        )

        async def deliveries_check() -> DependencyStatus:
            detail = f"{fanout.events} events, {dispatcher.attempts} attempts, {dispatcher.failures} failed"
            return DependencyStatus(ok=True, detail=detail)

        checks = {
            "nats": nats_check(nc),
            "mongo": ping_check(deliveries.ping),
            "deliveries": deliveries_check,
            "email": mailer.check,
        }
        bindings = webhooks_bindings(endpoints=endpoints, deliveries=deliveries, mails=mails, checks=checks)
        await bindings.serve(NatsBus(nc))
        if mailer.enabled:
            log.info(
                "handoff e-mails on, through %s:%d (%s)",
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_security,
            )
        log.info("webhooks ready")
        sending = asyncio.create_task(dispatcher.run(stop), name="webhook dispatch")
        mailing = asyncio.create_task(mailer.run(stop), name="handoff e-mail")
        await fanout.consume(stop)
        await sending
        await mailing
        await bindings.stop()
    finally:
        await client.aclose()
        await mongo.close()
        await close_nats(nc)


def main() -> None:
    """Console entry point."""
    run_service("webhooks", WebhooksSettings, serve)
