"""The chat worker's streaming parts on their own: the lean OpenAI-compatible client against the
loopback protocol server (tests/upstream.py), and the coalescing of deltas."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from obdal.servers import free_port
from obdal_chat.coalesce import coalesce
from obdal_chat.openai_stream import OpenAIStream, ProviderUsage
from obdal_common.errors import DependencyUnavailable
from tests.upstream import MODEL, PROMPT_TOKENS, WORDS, Upstream, serving


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Upstream, str]]:
    with serving() as running:
        yield running


def ask(client: OpenAIStream, base: str, question: str) -> AsyncIterator[str | ProviderUsage]:
    return client.stream(
        model=MODEL,
        messages=[{"role": "user", "content": question}],
        temperature=0.2,
        max_tokens=64,
        api_base=base,
        api_key="sk-loopback",
    )


async def drain(stream: AsyncIterator[str | ProviderUsage], into: list[str | ProviderUsage]) -> None:
    async for item in stream:
        into.append(item)


async def test_text_and_provider_usage(upstream: tuple[Upstream, str]) -> None:
    seen, base = upstream
    client = OpenAIStream(timeout_s=10, max_connections=4)
    try:
        items = [item async for item in ask(client, base, "hi")]
    finally:
        await client.aclose()
    assert "".join(i for i in items if isinstance(i, str)) == "".join(WORDS)
    assert items[-1] == ProviderUsage(prompt_tokens=PROMPT_TOKENS, completion_tokens=len(WORDS))
    sent = seen.requests[-1]
    assert (sent["model"], sent["stream"], sent["stream_options"]) == (MODEL, True, {"include_usage": True})
    assert (sent["temperature"], sent["max_tokens"]) == (0.2, 64)
    assert seen.auth[-1] == "Bearer sk-loopback"


async def test_a_broken_stream_is_model_unavailable_after_its_text(upstream: tuple[Upstream, str]) -> None:
    client = OpenAIStream(timeout_s=10, max_connections=4)
    received: list[str | ProviderUsage] = []
    try:
        with pytest.raises(DependencyUnavailable) as failure:
            await drain(ask(client, upstream[1], "[fail] hi"), received)
    finally:
        await client.aclose()
    assert failure.value.code == "model_unavailable"
    assert received == ["Partial"]


@pytest.mark.parametrize("where", ["refused", "closed port"])
async def test_provider_errors_are_model_unavailable(upstream: tuple[Upstream, str], where: str) -> None:
    base = upstream[1] if where == "refused" else f"http://127.0.0.1:{free_port()}/v1"
    client = OpenAIStream(timeout_s=10, max_connections=4)
    try:
        with pytest.raises(DependencyUnavailable) as failure:
            _ = [item async for item in ask(client, base, "[reject] hi")]
    finally:
        await client.aclose()
    assert failure.value.code == "model_unavailable"
    assert failure.value.status == 503


async def test_closing_the_stream_disconnects_from_the_provider(upstream: tuple[Upstream, str]) -> None:
    seen, base = upstream
    seen.disconnected.clear()
    client = OpenAIStream(timeout_s=10, max_connections=4)
    stream = ask(client, base, "[long] hi")
    try:
        assert isinstance(await anext(stream), str)
        await stream.aclose()  # type: ignore[attr-defined]
        # The provider notices on its next write (25 ms later) that nobody listens.
        assert await asyncio.to_thread(seen.disconnected.wait, 5)
    finally:
        await client.aclose()


async def paced(items: list[str | Exception], gap_s: float) -> AsyncIterator[str]:
    for item in items:
        await asyncio.sleep(gap_s)
        if isinstance(item, Exception):
            raise item
        yield item


async def test_coalesce_sends_the_first_delta_at_once_and_joins_the_rest() -> None:
    started = time.perf_counter()
    out: list[tuple[str, float]] = []
    async for text in coalesce(paced(["a", "b", "c", "d", "e", "f"], 0.01), window_s=0.2):
        out.append((text, time.perf_counter() - started))
    assert "".join(text for text, _ in out) == "abcdef"
    assert out[0][0] == "a"
    assert out[0][1] < 0.15, "the first delta is not held for the window"
    assert len(out) == 2, "the five later deltas arrive within one window"


async def test_coalesce_raises_the_source_error_after_its_text() -> None:
    out: list[str | ProviderUsage] = []
    with pytest.raises(DependencyUnavailable):
        await drain(coalesce(paced(["a", "b", DependencyUnavailable("gone")], 0.001), window_s=0.05), out)
    assert "".join(str(text) for text in out) == "ab"


async def test_closing_coalesce_closes_its_source() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[str]:
        try:
            while True:
                await asyncio.sleep(0.001)
                yield "x"
        finally:
            closed.set()

    deltas = coalesce(endless(), window_s=0.01)
    assert await anext(deltas) == "x"
    await deltas.aclose()
    assert closed.is_set()
