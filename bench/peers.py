"""The two Litestar reference servers of bench/stream.py, run by uvicorn as processes of their own.

``bare``: the framework's own limit, an SSE stream of 50 words from memory.
``relay``: the least a relay must do, a bearer check and an httpx stream from the upstream
(``BENCH_UPSTREAM``, an OpenAI-compatible base URL) relayed as it arrives.
``relay_aiohttp``: the same with aiohttp, the HTTP client of Obdal's chat worker.
``rag_relay``: the least a grounded answer costs in Python here: the bearer check, the question
embedded by Obdal's embedder and searched (hybrid, Qdrant Edge) in an index of the same document
Obdal's app holds (``BENCH_RAG_DIR``, ``BENCH_RAG_DOC``), the prompt, and the aiohttp stream.

    .venv/bin/python -m uvicorn peers:bare --app-dir bench --port 8001
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from litestar import Litestar, Request, post
from litestar.exceptions import NotAuthorizedException
from litestar.response import ServerSentEvent, Stream

from obdal_chat.prompts import build_messages
from obdal_common.settings import ObdalSettings, load_settings
from obdal_retrieval import Chunk, HybridIndex, open_index

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


def _aiohttp_stream(body: bytes) -> Stream:
    """``body`` posted to the upstream with aiohttp, its answer relayed as it arrives."""
    global _session
    if _session is None:  # made in the server's event loop
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    session = _session

    async def lines() -> AsyncIterator[bytes]:
        url = os.environ.get("BENCH_UPSTREAM", "") + "/chat/completions"
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            async for part in response.content.iter_any():
                yield part

    return Stream(lines(), media_type="text/event-stream")


@post("/v1/chat/completions", status_code=200)
async def relayed_by_aiohttp(request: Request[Any, Any, Any]) -> Stream:
    if request.headers.get("authorization") != f"Bearer {KEY}":
        raise NotAuthorizedException("unknown key")
    return _aiohttp_stream(await request.body())


_index: HybridIndex | None = None
RAG_APP = "app_ragrelay"
TOP_K = 5  # as Obdal's OBDAL_CHAT_TOP_K


async def _open_index() -> None:
    """The document's paragraphs indexed once at start (ingestion is not what is measured)."""
    global _index
    settings = load_settings(ObdalSettings, data_dir=Path(os.environ["BENCH_RAG_DIR"]))
    _index = await open_index(settings)
    text = await asyncio.to_thread(Path(os.environ["BENCH_RAG_DOC"]).read_text)
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    await _index.add(
        [
            Chunk(
                app_id=RAG_APP,
                file_id="file_ragrelay",
                filename="returns.md",
                position=n,
                text=p,
                title="returns",
            )
            for n, p in enumerate(paragraphs)
        ]
    )


@post("/v1/chat/completions", status_code=200)
async def grounded(request: Request[Any, Any, Any]) -> Stream:
    if request.headers.get("authorization") != f"Bearer {KEY}":
        raise NotAuthorizedException("unknown key")
    body = json.loads(await request.body())
    question = body["messages"][-1]["content"]
    assert _index is not None
    hits = await _index.search(RAG_APP, question, limit=TOP_K)
    messages = build_messages(
        system_prompt="You answer from the sources.", hits=hits, history=[], question=question
    )
    return _aiohttp_stream(
        json.dumps({"model": body["model"], "messages": messages, "stream": True}).encode()
    )


bare = Litestar([from_memory])
relay = Litestar([relayed])
relay_aiohttp = Litestar([relayed_by_aiohttp])
rag_relay = Litestar([grounded], on_startup=[_open_index])
