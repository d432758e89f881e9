"""The chat worker's side of its contract's RPCs (:class:`~obdal_common.contract.Chat`);
the streamed answer itself is :mod:`obdal_chat.answers`'."""

from __future__ import annotations

from redis.exceptions import RedisError

from obdal_chat.history import SessionHistory
from obdal_common.contract import Bindings, Chat
from obdal_common.errors import DependencyUnavailable
from obdal_common.health import Check, status_handler

__all__ = ["chat_bindings"]


def _redis_unavailable() -> DependencyUnavailable:
    # Stored turns are gone already (metering erases first); erasure is idempotent, so retrying is safe.
    return DependencyUnavailable("session context could not be erased, retry", code="redis_unavailable")


def chat_bindings(*, history: SessionHistory, checks: dict[str, Check]) -> Bindings:
    """Every chat RPC bound to what answers it."""
    return (
        Bindings(Chat, lower_errors={RedisError: _redis_unavailable})
        .bind(Chat.status, status_handler("chat", checks))
        .bind(Chat.erase_history, history.erase)
    )
