"""The two Litestar reference servers of bench/stream.py, run by uvicorn as processes of their own.

``bare``: the framework's own limit, an SSE stream of 50 words from memory.
``relay``: the least a relay must do, a bearer check and an httpx stream from the upstream
(``BENCH_UPSTREAM``, an OpenAI-compatible base URL) relayed as it arrives.
``relay_aiohttp``: the same with aiohttp, the HTTP client of Obdal's chat worker.

    .venv/bin/python -m uvicorn peers:bare --app-dir bench --port 8001
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
from litestar import Litestar, Request, post
from litestar.exceptions import NotAuthorizedException
from litestar.response import ServerSentEvent, Stream

KEY = "sk-bench"
WORDS = [f" w{n}" for n in range(50)]  # what tests/upstream.py answers by default


@post("/v1/chat/completions", status_code=200)
async def from_memory() -> ServerSentEvent:
    async def events() -> AsyncIterator[str]:
        for word in WORDS:
            yield '{"content":"' + word + '"}'

    return ServerSentEvent(events())


_client = httpx.AsyncClient(base_url=os.environ.get("BENCH_UPSTREAM", ""), timeout=30)


@post("/v1/chat/completions", status_code=200)
async def relayed(request: Request[Any, Any, Any]) -> Stream:
    if request.headers.get("authorization") != f"Bearer {KEY}":
        raise NotAuthorizedException("unknown key")
    body = await request.body()

    async def lines() -> AsyncIterator[bytes]:
        async with _client.stream(
            "POST", "/chat/completions", content=body, headers={"Content-Type": "application/json"}
        ) as response:
            async for part in response.aiter_bytes():
                yield part

    return Stream(lines(), media_type="text/event-stream")


_session: aiohttp.ClientSession | None = None


@post("/v1/chat/completions", status_code=200)
async def relayed_by_aiohttp(request: Request[Any, Any, Any]) -> Stream:
    global _session
    if request.headers.get("authorization") != f"Bearer {KEY}":
        raise NotAuthorizedException("unknown key")
    body = await request.body()
    if _session is None:  # made in the server's event loop
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    session = _session

    async def lines() -> AsyncIterator[bytes]:
        url = os.environ.get("BENCH_UPSTREAM", "") + "/chat/completions"
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            async for part in response.content.iter_any():
                yield part

    return Stream(lines(), media_type="text/event-stream")


bare = Litestar([from_memory])
relay = Litestar([relayed])
relay_aiohttp = Litestar([relayed_by_aiohttp])
