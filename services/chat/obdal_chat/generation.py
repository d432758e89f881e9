"""Generation through litellm: provider set-up, streaming, token counting and cost."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import litellm

from obdal_chat.app_settings import GenerationOptions
from obdal_chat.extractive import ExtractiveLLM
from obdal_common.errors import DependencyUnavailable

__all__ = ["Completion", "Generator"]

log = logging.getLogger(__name__)

_PROVIDER = "obdal"


@dataclass(slots=True)
class Completion:
    """Token accounting of one generated answer (complete or cut short)."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    provider_usage: bool = False


class Generator:
    """Streams completions from litellm models, each answer with its app's options."""

    def __init__(self) -> None:
        self._litellm = litellm
        self._unpriced: set[str] = set()
        if not any(p.get("provider") == _PROVIDER for p in litellm.custom_provider_map):
            litellm.custom_provider_map.append({"provider": _PROVIDER, "custom_handler": ExtractiveLLM()})
        litellm.suppress_debug_info = True

    async def stream(
        self, messages: list[dict[str, str]], completion: Completion, *, options: GenerationOptions
    ) -> AsyncIterator[str]:
        """Yield text deltas; fill ``completion`` with text and token counts as they come.

        The counts are completed in a ``finally`` so an answer cut short by a
        disconnect or an error is still metered.
        """
        kwargs: dict[str, Any] = {
            "model": options.model,
            "messages": messages,
            "stream": True,
            "temperature": options.temperature,
            "max_tokens": options.max_tokens,
        }
        if not options.model.startswith(f"{_PROVIDER}/"):
            kwargs["stream_options"] = {"include_usage": True}
        if options.api_base:
            kwargs["api_base"] = options.api_base
        if options.api_key:
            kwargs["api_key"] = options.api_key
        try:
            try:
                response = await self._litellm.acompletion(**kwargs)
            except Exception as exc:  # litellm raises provider-specific types
                raise DependencyUnavailable(
                    f"the language model is unavailable ({type(exc).__name__})", code="model_unavailable"
                ) from exc
            async for chunk in response:
                usage = getattr(chunk, "usage", None)
                if usage and getattr(usage, "prompt_tokens", 0):
                    completion.prompt_tokens = int(usage.prompt_tokens)
                    completion.completion_tokens = int(usage.completion_tokens or 0)
                    completion.provider_usage = True
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta.content
                if delta:
                    completion.text += delta
                    yield delta
        finally:
            if not completion.provider_usage:
                completion.prompt_tokens = self.count_tokens(options.model, messages=messages)
                completion.completion_tokens = self.count_tokens(options.model, text=completion.text)

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
            return (
                completion.prompt_tokens * options.input_cost_per_token
                + completion.completion_tokens * options.output_cost_per_token
            )
        if options.model.startswith(f"{_PROVIDER}/"):
            return 0.0
        try:
            prompt_cost, completion_cost = self._litellm.cost_per_token(
                model=options.model,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
            )
        except Exception:  # unknown model: litellm raises; price it at 0 and say so once per model
            if options.model not in self._unpriced:
                self._unpriced.add(options.model)
                log.warning(
                    "no price known for model %s; metering its cost as 0 (set the app's price)", options.model
                )
            return 0.0
        return float(prompt_cost + completion_cost)
