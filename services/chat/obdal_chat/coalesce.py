"""Fewer, larger deltas: the first text at once, the rest joined over a short window.

Every delta is a NATS message, a decode in the gateway and an SSE event; a model
streaming 50 tokens/s per answer would otherwise cost 50 of each per second per
stream. Joining what arrives within ``window_s`` bounds that to ``1/window_s`` while
the first token (what a user waits for) is never held back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

__all__ = ["coalesce"]


class _End:
    """The source is exhausted (or failed with ``error``)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


async def coalesce(source: AsyncIterator[str], *, window_s: float) -> AsyncGenerator[str, None]:
    """Yield the first item of ``source`` at once, then what arrives within each ``window_s``, joined.

    An error of ``source`` is raised after the text that came before it; closing this
    generator cancels the reading of ``source`` (and so closes it).
    """
    if window_s <= 0:
        async for text in source:
            yield text
        return
    queue: asyncio.Queue[str | _End] = asyncio.Queue()

    async def read() -> None:
        try:
            async for text in source:
                queue.put_nowait(text)
        except Exception as exc:  # handed to the reader, in order
            queue.put_nowait(_End(exc))
        else:
            queue.put_nowait(_End())

    reader = asyncio.create_task(read())
    try:
        first = True
        while True:
            item = await queue.get()
            if not first and not isinstance(item, _End):
                await asyncio.sleep(window_s)  # let the next words arrive
            first = False
            parts: list[str] = []
            while True:
                if isinstance(item, _End):
                    if parts:
                        yield "".join(parts)
                    if item.error is not None:
                        raise item.error
                    return
                parts.append(item)
                if queue.empty():
                    break
                item = queue.get_nowait()
            yield "".join(parts)
    finally:
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
