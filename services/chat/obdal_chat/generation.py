"""Generation through litellm: provider set-up, streaming, token counting and cost."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import litellm

from obdal_chat.extractive import ExtractiveLLM
from obdal_chat.settings import ChatSettings
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
    """Streams completions from the configured litellm model."""

    def __init__(self, settings: ChatSettings) -> None:
        self._litellm = litellm
        self._settings = settings
        self.model = settings.chat_model
        if not any(p.get("provider") == _PROVIDER for p in litellm.custom_provider_map):
            litellm.custom_provider_map.append({"provider": _PROVIDER, "custom_handler": ExtractiveLLM()})
        litellm.suppress_debug_info = True

    async def stream(self, messages: list[dict[str, str]], completion: Completion) -> AsyncIterator[str]:
        """Yield text deltas; fill ``completion`` with text and token counts as they come.

        The counts are completed in a ``finally`` so an answer cut short by a
        disconnect or an error is still metered.
        """
        s = self._settings
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "temperature": s.chat_temperature,
            "max_tokens": s.chat_max_tokens,
        }
        if not self.model.startswith(f"{_PROVIDER}/"):
            kwargs["stream_options"] = {"include_usage": True}
        if s.chat_api_base:
            kwargs["api_base"] = s.chat_api_base
        if s.chat_api_key:
            kwargs["api_key"] = s.chat_api_key
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
                # The caller may have counted the prompt already (to announce it before the first delta).
                completion.prompt_tokens = completion.prompt_tokens or self.count_tokens(messages=messages)
                completion.completion_tokens = self.count_tokens(text=completion.text)

    def count_tokens(self, *, messages: list[dict[str, str]] | None = None, text: str | None = None) -> int:
        """Tokens as the model's tokenizer counts them (litellm's offline tokenizers)."""
        if text is not None and not text:
            return 0
        return int(self._litellm.token_counter(model=self.model, messages=messages, text=text))

    def cost(self, completion: Completion) -> float:
        """USD cost from litellm's (offline) price map; 0 for unpriced or offline models."""
        if self.model.startswith(f"{_PROVIDER}/"):
            return 0.0
        try:
            prompt_cost, completion_cost = self._litellm.cost_per_token(
                model=self.model,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
            )
        except Exception:  # unknown model: litellm raises; price it at 0 and say so once
            log.warning("no price known for model %s; metering its cost as 0", self.model)
            return 0.0
        return float(prompt_cost + completion_cost)
