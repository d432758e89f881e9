"""Generation: streaming (through litellm, the lean OpenAI client or the offline answerer), tokens, cost."""

from __future__ import annotations

import bisect
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import litellm

from obdal_chat.app_settings import GenerationOptions
from obdal_chat.extractive import stream_answer
from obdal_chat.openai_stream import OpenAIStream, ProviderUsage
from obdal_chat.settings import ChatSettings
from obdal_common.errors import DependencyUnavailable
from obdal_retrieval import Hit

__all__ = ["Completion", "Generator", "answers_at_once"]

log = logging.getLogger(__name__)

_OFFLINE = "obdal/"  # the offline extractive answerer: called directly, not through litellm
_OPENAI = "openai/"  # OpenAI-compatible servers: streamed by OpenAIStream, not litellm


def answers_at_once(model: str) -> bool:
    """Whether ``model`` produces its whole answer at once (the offline extractive model).

    Its words are relayed as they come, never coalesced: joined, they would arrive as one
    message and the answer would no longer look like a stream.
    """
    return model.startswith(_OFFLINE)


@dataclass(slots=True)
class Completion:
    """Token accounting of one generated answer (complete or cut short)."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    provider_usage: bool = False


class Generator:
    """Streams completions, each answer with its app's options."""

    def __init__(self, settings: ChatSettings) -> None:
        self._litellm = litellm
        self._lean_openai = settings.chat_openai_stream
        # USD per (input, output) token by model; None for a model litellm does not price.
        self._unit_prices: dict[str, tuple[float, float] | None] = {}
        litellm.suppress_debug_info = True
        self._openai = OpenAIStream(
            timeout_s=settings.chat_provider_timeout_s, max_connections=settings.chat_concurrency
        )

    async def aclose(self) -> None:
        """Release the provider connections."""
        await self._openai.aclose()

    async def stream(
        self,
        messages: list[dict[str, str]],
        completion: Completion,
        *,
        options: GenerationOptions,
        question: str,
        passages: Sequence[Hit],
    ) -> AsyncIterator[str]:
        """Yield text deltas; fill ``completion`` with text and token counts as they come.

        ``messages`` is the prompt (:func:`obdal_chat.prompts.build_messages`) of the turn's
        ``question`` and grounded ``passages``; the offline answerer is given those two and
        the app's persona as they are (:func:`obdal_chat.extractive.stream_answer`), a model
        the prompt. ``completion.prompt_tokens`` is the caller's count of ``messages`` (it
        announces it before the first delta); the provider's own usage replaces both counts
        when it reports one. The completion count is done in a ``finally`` so an answer cut
        short by a disconnect or an error is still metered.
        """
        source: AsyncGenerator[str | ProviderUsage, None]
        if answers_at_once(options.model):
            source = self._offline(question, passages, options)
        elif options.model.startswith(_OPENAI) and self._lean_openai:
            source = self._openai.stream(
                model=options.model.removeprefix(_OPENAI),
                messages=messages,
                temperature=options.temperature,
                max_tokens=options.max_tokens,
                api_base=options.api_base,
                api_key=options.api_key,
            )
        else:
            source = self._litellm_stream(messages, options)
        try:
            # aclosing: a client gone mid-answer closes the provider stream at once, not at collection.
            async with aclosing(source) as items:
                async for item in items:
                    if isinstance(item, ProviderUsage):
                        if item.prompt_tokens:
                            completion.prompt_tokens = item.prompt_tokens
                            completion.completion_tokens = item.completion_tokens
                            completion.provider_usage = True
                    elif item:
                        completion.text += item
                        yield item
        finally:
            if not completion.provider_usage:
                completion.completion_tokens = self.count_tokens(options.model, text=completion.text)

    async def _offline(
        self, question: str, passages: Sequence[Hit], options: GenerationOptions
    ) -> AsyncGenerator[str, None]:
        """The offline answer, cut at ``options.max_tokens`` as a model's would be: what an answer
        may cost is bounded for every model (budgets reserve that bound, docs/security.md)."""
        pieces = [piece async for piece in stream_answer(question, passages, persona=options.system_prompt)]
        keep = len(pieces)
        if self.count_tokens(options.model, text="".join(pieces)) > options.max_tokens:
            # The most pieces within the bound (counts grow with the prefix); rare, so log(n) counts.
            keep = (
                bisect.bisect_right(
                    range(len(pieces) + 1),
                    options.max_tokens,
                    key=lambda n: self.count_tokens(options.model, text="".join(pieces[:n])),
                )
                - 1
            )
        for piece in pieces[:keep]:
            yield piece

    async def _litellm_stream(
        self, messages: list[dict[str, str]], options: GenerationOptions
    ) -> AsyncGenerator[str | ProviderUsage, None]:
        kwargs: dict[str, Any] = {
            "model": options.model,
            "messages": messages,
            "stream": True,
            "temperature": options.temperature,
            "max_tokens": options.max_tokens,
            "stream_options": {"include_usage": True},
        }
        if options.api_base:
            kwargs["api_base"] = options.api_base
        if options.api_key:
            kwargs["api_key"] = options.api_key
        try:
            response = await self._litellm.acompletion(**kwargs)
        except Exception as exc:  # litellm raises provider-specific types
            raise DependencyUnavailable(
                f"the language model is unavailable ({type(exc).__name__})", code="model_unavailable"
            ) from exc
        try:
            async for chunk in response:
                usage = getattr(chunk, "usage", None)
                if usage and getattr(usage, "prompt_tokens", 0):
                    yield ProviderUsage(
                        prompt_tokens=int(usage.prompt_tokens),
                        completion_tokens=int(usage.completion_tokens or 0),
                    )
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except Exception as exc:  # a stream broken mid-answer: the same typed error as before it
            raise DependencyUnavailable(
                f"the language model is unavailable ({type(exc).__name__})", code="model_unavailable"
            ) from exc

    def count_tokens(
        self, model: str, *, messages: list[dict[str, str]] | None = None, text: str | None = None
    ) -> int:
        """Tokens as ``model``'s tokenizer counts them (litellm's offline tokenizers)."""
        if text is not None and not text:
            return 0
        return int(self._litellm.token_counter(model=model, messages=messages, text=text))

    def cost(self, completion: Completion, *, options: GenerationOptions) -> float:
        """USD cost: the app's own price if it set one, else litellm's (offline) price map;
        0 for the offline answerer and for models nobody priced."""
        if options.input_cost_per_token is not None and options.output_cost_per_token is not None:
            unit: tuple[float, float] | None = (options.input_cost_per_token, options.output_cost_per_token)
        elif answers_at_once(options.model):
            return 0.0
        else:
            unit = self._litellm_unit_price(options.model)
        if unit is None:
            return 0.0
        return completion.prompt_tokens * unit[0] + completion.completion_tokens * unit[1]

    def _litellm_unit_price(self, model: str) -> tuple[float, float] | None:
        # litellm's price lookup is costly per answer (~13% of a worker's time when profiled),
        # so it runs once per model. Its long-context tiers start far above our bounded prompts.
        if model not in self._unit_prices:
            try:
                prompt_cost, completion_cost = self._litellm.cost_per_token(
                    model=model, prompt_tokens=1, completion_tokens=1
                )
                self._unit_prices[model] = (float(prompt_cost), float(completion_cost))
            except Exception:  # unknown model: litellm raises; price it at 0 and say so once
                log.warning(
                    "no price known for model %s; metering its cost as 0 (set the app's price)", model
                )
                self._unit_prices[model] = None
        return self._unit_prices[model]
