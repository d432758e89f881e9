"""The chat worker's contract: the streamed answer, its working history, its health.

The answer is not a request/reply but a stream: the gateway (``obdal_gateway.relay``)
sends a :class:`~obdal_common.schemas.ChatRequest` to ``subjects.CHAT_REQUEST`` (queue
group ``chat``) and the worker (``obdal_chat.answers``) publishes
:data:`~obdal_common.schemas.ChatReply` messages to the request's reply inbox —
``accepted``, ``started``, ``delta``…, ``sources``, ``end`` or ``error``, ``ping`` while the
model is slow — until ``end`` or ``error``. A client that goes away is told to the
worker on ``subjects.chat_cancel_subject(request_id)``.

The request/reply RPCs below are served by ``obdal_chat.bindings``. The chat owns each
session's working history (Redis) and the daily token counters (each answer's cost reserved
before it is generated and settled after; read by the gateway through
:mod:`obdal_common.budgets`, the one shared read model).
"""

from __future__ import annotations

from obdal_common import subjects
from obdal_common.contract.rpc import Contract, Rpc
from obdal_common.schemas import HistoryErase, HistoryErased, ServiceStatus, StatusQuery

__all__ = ["Chat"]


class Chat(Contract):
    service = "chat"

    status = Rpc(subjects.status_subject("chat"), StatusQuery, ServiceStatus, timeout=1.5)
    """Health of the worker, its index, Redis and model (``GET /v1/status``)."""

    erase_history = Rpc("obdal.chat.history.erase", HistoryErase, HistoryErased, timeout=5.0)
    """Forget the working context of sessions (``DELETE /v1/sessions/{id}``, ``/v1/users/{user}``),
    after metering erased their stored turns; may answer 503 ``redis_unavailable``."""
