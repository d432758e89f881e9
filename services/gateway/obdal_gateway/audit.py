"""Security-relevant actions as audit events on JetStream (stored by metering)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from nats.js import JetStreamContext

from obdal_common import subjects
from obdal_common.ids import new_id
from obdal_common.schemas import AuditEvent, encode
from obdal_common.telemetry import inject_headers

__all__ = ["AuditLog"]

log = logging.getLogger(__name__)


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
