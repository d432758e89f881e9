"""Per-app generation settings: an app's own choices (NATS KV, watched) over the worker's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.kv import KeyValue

from obdal_chat.settings import ChatSettings
from obdal_common.kvmirror import KVMirror
from obdal_common.schemas import AppRecord

__all__ = ["AppSettings", "GenerationOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationOptions:
    """Everything one answer's generation depends on."""

    model: str
    system_prompt: str
    temperature: float
    max_tokens: int
    api_base: str | None = None
    api_key: str | None = None
    # USD per token; ``None`` prices through litellm's price map.
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None


def _provider(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else ""


class AppSettings:
    """Resolves the options of an app's answers; apps are mirrored from KV, so a change applies at once."""

    def __init__(self, settings: ChatSettings, apps: KeyValue) -> None:
        self._settings = settings
        self._apps = KVMirror(apps, AppRecord)

    async def start(self) -> None:
        await self._apps.start()

    async def stop(self) -> None:
        await self._apps.stop()

    def defaults(self) -> GenerationOptions:
        """The worker's own settings (``OBDAL_CHAT_*``)."""
        s = self._settings
        return GenerationOptions(
            model=s.chat_model,
            system_prompt=s.chat_system_prompt,
            temperature=s.chat_temperature,
            max_tokens=s.chat_max_tokens,
            api_base=s.chat_api_base,
            api_key=s.chat_api_key,
        )

    async def for_app(self, app_id: str) -> GenerationOptions:
        """The options for one of ``app_id``'s answers."""
        base = self.defaults()
        app = await self._apps.get(app_id)
        config = app.chat if app else None
        if config is None:
            return base
        model = config.model or base.model
        # The configured endpoint and key belong to the default model's provider; another
        # provider's model uses litellm's own credentials (e.g. ANTHROPIC_API_KEY).
        same_provider = _provider(model) == _provider(base.model)
        input_cost = output_cost = None
        if config.input_cost_per_mtok is not None and config.output_cost_per_mtok is not None:
            input_cost = config.input_cost_per_mtok / 1e6
            output_cost = config.output_cost_per_mtok / 1e6
        return GenerationOptions(
            model=model,
            system_prompt=config.system_prompt or base.system_prompt,
            temperature=base.temperature if config.temperature is None else config.temperature,
            max_tokens=config.max_tokens or base.max_tokens,
            api_base=base.api_base if same_provider else None,
            api_key=base.api_key if same_provider else None,
            input_cost_per_token=input_cost,
            output_cost_per_token=output_cost,
        )
