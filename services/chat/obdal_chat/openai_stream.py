"""A lean streaming client for OpenAI-compatible chat completions: aiohttp and msgspec, nothing else.

litellm builds a full response object per streamed chunk (about 1.4 ms each, see
docs/performance.md); for ``openai/...`` models this client reads the server-sent
events itself and decodes only the fields the answer needs. litellm stays in charge
of every other provider, of token counting and of prices. aiohttp rather than httpx:
httpcore's pool scans every pooled connection (a poll(2) each) twice per request, which
cost five times aiohttp's CPU per stream at a few hundred concurrent streams.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator

import aiohttp
import msgspec

from obdal_common.errors import DependencyUnavailable

__all__ = ["OPENAI_API_BASE", "OpenAIStream", "ProviderUsage"]

OPENAI_API_BASE = "https://api.openai.com/v1"
_DONE = b"[DONE]"
_CODE = "model_unavailable"


class ProviderUsage(msgspec.Struct, frozen=True):
    """Token counts the provider reports at the end of a stream (``stream_options.include_usage``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Error(msgspec.Struct):
    message: str = ""


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []
    usage: ProviderUsage | None = None
    error: _Error | None = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode
_encoder = msgspec.json.Encoder()


def _unavailable(reason: str) -> DependencyUnavailable:
    return DependencyUnavailable(f"the language model is unavailable ({reason})", code=_CODE)


class OpenAIStream:
    """Streams chat completions from OpenAI-compatible servers over one pooled aiohttp session."""

    def __init__(self, *, timeout_s: float, max_connections: int) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, connect=min(timeout_s, 10.0), sock_read=timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # One session for every answer of the worker (connections to the provider are reused),
        # made on first use so that it belongs to the running event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections), timeout=self._timeout
            )
        return self._session

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def stream(
        self,
        *,
        model: str,
        messages: list[dict[str, str]],
        temperature: float,
        max_tokens: int,
        api_base: str | None,
        api_key: str | None,
    ) -> AsyncGenerator[str | ProviderUsage, None]:
        """Yield text (the content of every event that arrived together, joined) and, last, the usage.

        Every failure, before or during the stream, is a ``model_unavailable``
        :class:`DependencyUnavailable`. Closing the iterator closes the connection, which
        tells the provider to stop generating.
        """
        body = _encoder.encode(
            {
                "model": model,
                "messages": messages,
                "stream": True,
                "stream_options": {"include_usage": True},
                "temperature": temperature,
                "max_tokens": max_tokens,
            }
        )
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = api_key or os.environ.get("OPENAI_API_KEY")  # litellm's fallback too
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{(api_base or OPENAI_API_BASE).rstrip('/')}/chat/completions"
        try:
            async with self._client().post(url, data=body, headers=headers) as response:
                if response.status >= 400:
                    await response.read()
                    raise _unavailable(f"HTTP {response.status}")
                async for item in _events(response.content.iter_any()):
                    yield item
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unavailable(type(exc).__name__) from exc


async def _events(reads: AsyncIterator[bytes]) -> AsyncGenerator[str | ProviderUsage, None]:
    buffer = b""
    finished = False
    async for data in reads:
        lines = (buffer + data).split(b"\n")
        buffer = lines.pop()  # an incomplete last line waits for the next read
        parts: list[str] = []
        usage: ProviderUsage | None = None
        failure: DependencyUnavailable | None = None
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, event names
            payload = line[5:].strip()
            if payload == _DONE:
                finished = True
                break
            try:
                chunk = _decode_chunk(payload)
            except msgspec.DecodeError:
                failure = _unavailable("malformed stream")
                break
            if chunk.error is not None:
                failure = _unavailable(chunk.error.message or "error event")
                break
            usage = chunk.usage or usage
            for choice in chunk.choices[:1]:
                if choice.delta is not None and choice.delta.content:
                    parts.append(choice.delta.content)
                finished = finished or choice.finish_reason is not None
        if parts:  # the text before a failure in the same read is still the answer's (and metered)
            yield "".join(parts)
        if failure is not None:
            raise failure
        if usage is not None:
            yield usage
    if buffer.startswith(b"data:") and buffer[5:].strip() == _DONE:  # no newline after the last event
        finished = True
    if not finished:
        raise _unavailable("the stream ended early")
