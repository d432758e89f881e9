"""Gateway settings (``OBDAL_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from obdal_common.settings import ObdalSettings

__all__ = ["GatewaySettings"]


class GatewaySettings(ObdalSettings):
    gateway_host: str = Field("127.0.0.1", description="Interface to listen on (0.0.0.0 in containers)")
    gateway_port: int = Field(8080, ge=1, le=65535)
    admin_token: SecretStr | None = Field(
        None, description="Operator token for /v1/admin; generated and kept under the data dir if unset"
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token required on GET /metrics; unset leaves it open (keep it off the internet)",
    )
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest accepted upload")
    max_message_chars: int = Field(8000, ge=1, description="Longest accepted chat message")
    max_history_messages: int = Field(
        50,
        ge=0,
        le=200,
        description="Most messages of a client-sent history (OpenAI API) kept, the last ones",
    )
    chat_accept_timeout_s: float = Field(2.0, gt=0, description="Wait for a worker to take a request")
    chat_idle_timeout_s: float = Field(5.0, gt=0, description="Silence from a worker that ends a stream")
    sse_ping_s: float = Field(10.0, gt=0, description="Keep-alive comment interval on idle streams")
    default_rate_limit_rpm: int = Field(
        600, ge=1, description="Requests per minute of keys without their own limit"
    )
    client_send_timeout_s: float = Field(
        30.0, gt=0, description="A client that takes no response data for this long is disconnected"
    )
