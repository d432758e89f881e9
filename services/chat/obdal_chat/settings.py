"""Chat worker settings (``OBDAL_*``)."""

from __future__ import annotations

from pydantic import Field

from obdal_common.settings import ObdalSettings

__all__ = ["DEFAULT_SYSTEM_PROMPT", "ChatSettings"]

# The persona; an app may replace it. The grounding rules (prompts.GROUNDING_RULES) always follow it.
DEFAULT_SYSTEM_PROMPT = "You are a customer-support assistant."


class ChatSettings(ObdalSettings):
    chat_model: str = Field("obdal/extractive", description="litellm model id")
    chat_api_base: str | None = Field(None, description="Provider base URL (OpenAI-compatible servers)")
    chat_api_key: str | None = None
    chat_system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, min_length=1, max_length=8000)
    chat_temperature: float = Field(0.2, ge=0.0, le=2.0)
    chat_max_tokens: int = Field(512, ge=1, le=32768)
    chat_top_k: int = Field(5, ge=1, le=50, description="Passages put into the prompt")
    chat_min_relevance: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity a passage needs to be used and cited (unset: the embedder's "
        "calibrated value, docs/chat.md)",
    )
    chat_curated_threshold: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity from which a question gets a curated answer as written (unset: "
        "the embedder's calibrated value, docs/support.md)",
    )
    chat_history_messages: int = Field(12, ge=0, le=200)
    chat_session_ttl_s: int = Field(86400, ge=60)
    chat_heartbeat_s: float = Field(1.0, gt=0, description="Ping interval while generating")
    chat_concurrency: int = Field(64, ge=1, description="Answers in flight per worker")
    chat_partial_max_deliver: int = Field(
        20, ge=1, le=100, description="Attempts at metering an answer whose worker died"
    )
    chat_partial_ack_wait_s: float = Field(
        60.0, gt=1, description="How long such an attempt may take before it is redelivered"
    )
    chat_provider_timeout_s: float = Field(
        120.0, gt=0, description="Longest wait for an OpenAI-compatible provider's next bytes"
    )
    chat_openai_stream: bool = Field(
        True, description="Stream openai/ models with Obdal's lean client (false: through litellm)"
    )
    chat_reservation_ttl_s: float = Field(
        600.0,
        gt=0,
        description="Longest an answer holds its estimated cost against its key's token budget "
        "(a worker that dies holding it gives it back then)",
    )
    chat_query_cache_mb: float = Field(
        64.0,
        ge=0,
        le=65536,
        description="Memory for repeated questions' embeddings and searches, per worker, shared fairly "
        "by the apps (0: off; docs/chat.md)",
    )
    chat_coalesce_ms: float = Field(
        30.0, ge=0, description="Deltas after the first are sent at most this often (0: each at once)"
    )
