"""From the ``OBDAL_HOOKS`` stream to deliveries: each event becomes one per endpoint that wants it.

A message is erased from the stream and acked only once its deliveries are stored, so an event
is never lost between the stream and the queue (NATS or MongoDB restarting meanwhile: it is
redelivered, and stored once), and a conversation's content is not kept on the bus's disk after
it was handed on (an ack alone leaves its bytes in the block file: ``obdal_common.messaging``).
A ``handoff.requested`` event also queues its e-mail (``obdal_webhooks.handoff_mail``), after its
deliveries are stored, before the ack: stored, not sent, so no SMTP server slows the stream.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from obdal_common import subjects
from obdal_common.messaging import decode_or_term, erase_msg, pull_each
from obdal_common.schemas import HookEvent, WebhookListQuery, encode
from obdal_webhooks.deliveries import DeliveryStore
from obdal_webhooks.endpoints import EndpointStore
from obdal_webhooks.handoff_mail import Mailer

__all__ = ["Fanout", "payload_of"]

log = logging.getLogger(__name__)

# Redeliveries of an event whose deliveries could not be stored (MongoDB down) before it is dropped:
# with the 30 s ack wait, about a day.
_MAX_DELIVER = 3000
_ACK_WAIT_S = 30.0


def payload_of(event: HookEvent) -> str:
    """The body every endpoint gets, as the Standard Webhooks specification shapes it."""
    timestamp = event.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return encode({"type": event.type, "timestamp": timestamp, "data": event.data}).decode()


class Fanout:
    def __init__(
        self,
        js: JetStreamContext,
        endpoints: EndpointStore,
        deliveries: DeliveryStore,
        mailer: Mailer | None = None,
    ) -> None:
        self._js = js
        self._endpoints = endpoints
        self._deliveries = deliveries
        self._mailer = mailer
        self.events = 0

    async def consume(self, stop: asyncio.Event) -> None:
        sub = await self._js.pull_subscribe(
            subjects.HOOKS_SUBJECTS[0],
            durable=subjects.HOOKS_CONSUMER,
            stream=subjects.HOOKS_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT, max_deliver=_MAX_DELIVER, ack_wait=_ACK_WAIT_S
            ),
        )
        await pull_each(sub, self._fan_out, stop=stop, batch=50, what="webhook event")

    async def _fan_out(self, msg: Msg) -> None:
        event = await decode_or_term(msg, HookEvent, what="webhook event")
        if event is None:
            return
        listed = await self._endpoints.list(WebhookListQuery(app_id=event.app_id))
        wanted = [e for e in listed.endpoints if e.enabled and (not e.events or event.type in e.events)]
        if wanted:
            await self._deliveries.enqueue(
                event, seq=msg.metadata.sequence.stream, payload=payload_of(event), endpoints=wanted
            )
        if self._mailer is not None:
            await self._mailer.enqueue(event)
        await erase_msg(self._js, msg)
        await msg.ack()
        self.events += 1
