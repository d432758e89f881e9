"""Sending due deliveries: each endpoint's in order, one at a time, many endpoints at once.

Every tick a replica lists the endpoints with a delivery due, takes the lease of each it can
(MongoDB, so replicas never send one endpoint's deliveries at once, which would break their
order) and drains it: the head delivery is sent, logged, and the next follows at once if due.
A failing endpoint's head waits out its retry delay while the others keep going. An endpoint
that has failed every attempt for ``OBDAL_WEBHOOK_DISABLE_AFTER_S`` is disabled: its pending
deliveries are held, an audit entry and an ``endpoint.disabled`` event say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from datetime import UTC, datetime, timedelta

import msgspec
from nats.js import JetStreamContext

from obdal_common.errors import NotFound
from obdal_common.hooks import publish_hook
from obdal_common.ids import new_id
from obdal_common.schemas import DeliveryAttempt, WebhookEndpoint
from obdal_webhooks.audit import record_audit
from obdal_webhooks.deliveries import DeliveryStore
from obdal_webhooks.endpoints import EndpointStore
from obdal_webhooks.sender import Sender
from obdal_webhooks.settings import WebhooksSettings

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

# A lease outlives the longest attempt by this much, and is renewed before each attempt.
_LEASE_MARGIN_S = 30.0


class Dispatcher:
    def __init__(
        self,
        settings: WebhooksSettings,
        *,
        js: JetStreamContext,
        endpoints: EndpointStore,
        deliveries: DeliveryStore,
        sender: Sender,
    ) -> None:
        self._settings = settings
        self._js = js
        self._endpoints = endpoints
        self._deliveries = deliveries
        self._sender = sender
        self._delays = settings.retry_delays()
        self._owner = f"{socket.gethostname()}-{new_id('w', 8)}"
        self._draining: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self.attempts = 0
        self.failures = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._tick(stop)
            except Exception as exc:  # MongoDB or NATS restarting: the next tick tries again
                log.warning("webhook dispatch tick failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.webhook_tick_s)
        for task in list(self._draining.values()):
            task.cancel()
        await asyncio.gather(*self._draining.values(), return_exceptions=True)

    async def _tick(self, stop: asyncio.Event) -> None:
        for app_id, endpoint_id in await self._deliveries.due_endpoints(datetime.now(UTC)):
            if endpoint_id in self._draining:
                continue
            task = asyncio.create_task(self._drain(app_id, endpoint_id, stop), name=f"webhook {endpoint_id}")
            self._draining[endpoint_id] = task
            task.add_done_callback(self._drained)

    def _drained(self, task: asyncio.Task[None]) -> None:
        self._draining.pop(task.get_name().removeprefix("webhook "), None)

    def _lease_until(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._settings.webhook_timeout_s + _LEASE_MARGIN_S)

    async def _drain(self, app_id: str, endpoint_id: str, stop: asyncio.Event) -> None:
        try:
            async with self._slots:
                while not stop.is_set():
                    now = datetime.now(UTC)
                    if not await self._deliveries.lease(
                        endpoint_id, owner=self._owner, until=self._lease_until(), now=now
                    ):
                        return
                    head = await self._deliveries.head(endpoint_id)
                    if head is None or head["next_at"] > now:
                        return
                    found = await self._endpoints.read(app_id, endpoint_id)
                    if found is None:  # deleted meanwhile: its log goes with it
                        await self._deliveries.delete_endpoint(endpoint_id)
                        return
                    endpoint = found[0]
                    if not endpoint.enabled:
                        await self._deliveries.park(endpoint_id)
                        return
                    attempt = await self._sender.send(
                        endpoint, msg_id=head["event_id"], payload=head["payload"]
                    )
                    self.attempts += 1
                    await self._deliveries.record(head, attempt, delays=self._delays)
                    await self._outcome(endpoint, attempt)
        except Exception as exc:
            log.warning("delivering to webhook %s interrupted: %r", endpoint_id, exc)
        finally:
            with contextlib.suppress(Exception):
                await self._deliveries.release(endpoint_id, owner=self._owner)

    async def _outcome(self, endpoint: WebhookEndpoint, attempt: DeliveryAttempt) -> None:
        """Remember the endpoint's last success or first failure; disable it once it failed too long."""
        ok = attempt.status_code is not None and 200 <= attempt.status_code < 300
        disable_after = timedelta(seconds=self._settings.webhook_disable_after_s)
        if not ok:
            self.failures += 1

        def change(current: WebhookEndpoint) -> WebhookEndpoint | None:
            if ok:
                if (
                    current.failing_since is None
                    and current.last_success_at
                    and attempt.at - current.last_success_at < timedelta(minutes=1)
                ):
                    return None  # a busy endpoint's successes are not each a write
                return msgspec.structs.replace(current, last_success_at=attempt.at, failing_since=None)
            since = current.failing_since or attempt.at
            if current.enabled and attempt.at - since >= disable_after:
                first = since.isoformat(timespec="seconds")
                reason = f"every delivery failed since {first}; last: {attempt.error}"
                return msgspec.structs.replace(
                    current, failing_since=since, enabled=False, disabled_reason=reason
                )
            if current.failing_since is None:
                return msgspec.structs.replace(current, failing_since=since)
            return None

        try:
            stored = await self._endpoints.change(endpoint.app_id, endpoint.endpoint_id, change)
        except NotFound:
            return
        if endpoint.enabled and not stored.enabled:
            await self._disabled(stored)

    async def _disabled(self, endpoint: WebhookEndpoint) -> None:
        log.warning(
            "webhook %s of %s disabled: %s", endpoint.endpoint_id, endpoint.app_id, endpoint.disabled_reason
        )
        await self._deliveries.park(endpoint.endpoint_id)
        await record_audit(
            self._js,
            "webhook.disabled",
            app_id=endpoint.app_id,
            target=endpoint.endpoint_id,
            detail={"reason": endpoint.disabled_reason or "", "url": endpoint.url},
            give_up_after=self._settings.event_publish_retry_s,
        )
        await publish_hook(
            self._js,
            "endpoint.disabled",
            app_id=endpoint.app_id,
            data={
                "endpoint_id": endpoint.endpoint_id,
                "url": endpoint.url,
                "reason": endpoint.disabled_reason,
            },
            give_up_after=self._settings.event_publish_retry_s,
        )
