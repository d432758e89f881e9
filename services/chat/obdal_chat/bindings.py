"""The chat worker's side of its contract's RPCs (:class:`~obdal_common.contract.Chat`);
the streamed answer itself is :mod:`obdal_chat.answers`'."""

from __future__ import annotations

from obdal_chat.history import SessionHistory
from obdal_common.contract import Bindings, Chat
from obdal_common.health import Check, status_handler

__all__ = ["chat_bindings"]


def chat_bindings(*, history: SessionHistory, checks: dict[str, Check]) -> Bindings:
    """Every chat RPC bound to what answers it."""
    return (
        Bindings(Chat)
        .bind(Chat.status, status_handler("chat", checks))
        .bind(Chat.erase_history, history.erase)
    )
