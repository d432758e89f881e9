"""What the webhooks service does on its own (an endpoint disabled, a handoff e-mail given up) goes
in the audit log like an operator's action; a lost audit event is logged, never raised."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from nats.js import JetStreamContext

from obdal_common import subjects
from obdal_common.ids import new_id
from obdal_common.messaging import publish_event
from obdal_common.schemas import AuditEvent

__all__ = ["record_audit"]

log = logging.getLogger(__name__)

_ACTOR = "obdal-webhooks"


async def record_audit(
    js: JetStreamContext,
    action: str,
    *,
    app_id: str,
    target: str,
    detail: dict[str, str],
    give_up_after: float,
) -> None:
    """Publish one audit event (stored by metering), retried for ``give_up_after`` seconds."""
    audit = AuditEvent(
        event_id=new_id("evt"),
        action=action,
        occurred_at=datetime.now(UTC),
        app_id=app_id,
        actor=_ACTOR,
        target=target,
        detail=detail,
    )
    try:
        await publish_event(
            js, subjects.AUDIT_EVENT, audit, msg_id=audit.event_id, give_up_after=give_up_after
        )
    except Exception as exc:
        log.error("audit event %s of %s not recorded: %r", action, target, exc)
