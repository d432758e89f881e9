"""Waiting a moment for a turn to be stored: a rating or a handoff may come right after its answer
ends, before metering has consumed the turn event (~60 ms p50)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["found_within"]

T = TypeVar("T")

_FIRST_POLL_S = 0.05


async def found_within(find: Callable[[], Awaitable[T | None]], *, wait_s: float) -> T | None:
    """What ``find`` finds, asking again until it finds something or ``wait_s`` has passed."""
    deadline = time.monotonic() + wait_s
    pause = _FIRST_POLL_S
    while True:
        found = await find()
        left = deadline - time.monotonic()
        if found is not None or left <= 0:
            return found
        # Doubling: a just-ended answer is found within a poll or two, and an id that never
        # was an answer costs 7 reads over 3 s, not 60.
        await asyncio.sleep(min(pause, left))
        pause *= 2
