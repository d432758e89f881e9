"""Where a session's hot context lives in Redis, shared by the writer (chat) and the eraser (gateway)."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["SESSION_ID_PATTERN", "history_key", "is_session_id"]

# The shape of a client-chosen session id (``POST /v1/chat`` accepts the same).
SESSION_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,128}$"
_SESSION_ID = re.compile(SESSION_ID_PATTERN)


def history_key(app_id: str, session_id: str) -> str:
    """The Redis list holding a session's recent messages, namespaced by app."""
    return f"obdal:history:{app_id}:{session_id}"


def is_session_id(value: str) -> bool:
    """Whether ``value`` is a well-formed session id."""
    return _SESSION_ID.fullmatch(value) is not None
