"""What a session id may look like: the gateway checks it, metering and chat key by it."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["SESSION_ID_PATTERN", "is_session_id"]

# The shape of a client-chosen session id (``POST /v1/chat`` accepts the same).
SESSION_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,128}$"
_SESSION_ID = re.compile(SESSION_ID_PATTERN)


def is_session_id(value: str) -> bool:
    """Whether ``value`` is a well-formed session id."""
    return _SESSION_ID.fullmatch(value) is not None
