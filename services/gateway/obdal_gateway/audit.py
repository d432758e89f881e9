"""Security-relevant actions as audit events on JetStream (stored by metering), and what the app's
webhooks hear of from the gateway (:mod:`obdal_common.hooks`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext

from obdal_common import subjects
from obdal_common.hooks import publish_hook
from obdal_common.ids import new_id
from obdal_common.schemas import AuditEvent, HookEventType, encode
from obdal_common.telemetry import inject_headers

__all__ = ["AuditLog"]

log = logging.getLogger(__name__)

# A request that reports an event waits at most this long for JetStream (then it is logged as lost).
_HOOK_PUBLISH_S = 2.0


class AuditLog:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def record(
        self,
        action: str,
        *,
        app_id: str | None,
        actor: str | None,
        target: str | None = None,
        detail: dict[str, str] | None = None,
    ) -> None:
        """Publish one audit event. A failure is logged, never fails the request."""
        event = AuditEvent(
            event_id=new_id("evt"),
            action=action,
            occurred_at=datetime.now(UTC),
            app_id=app_id,
            actor=actor,
            target=target,
            detail=detail or {},
        )
        try:
            await self._js.publish(
                subjects.AUDIT_EVENT, encode(event), headers=inject_headers({"Nats-Msg-Id": event.event_id})
            )
        except Exception as exc:
            log.error("audit event %s (%s) not recorded: %s", action, target, exc)

    async def hook(
        self, event_type: HookEventType, *, app_id: str, data: dict[str, Any], event_id: str | None = None
    ) -> None:
        """Publish one webhook event; like an audit event, a failure never fails the request."""
        await publish_hook(
            self._js, event_type, app_id=app_id, data=data, event_id=event_id, give_up_after=_HOOK_PUBLISH_S
        )
