"""Gateway settings (``OBDAL_*``).

The TLS pair is checked here, at start, rather than when uvicorn loads it: a missing, unreadable or
mismatched certificate or key is then a configuration error naming the variable (exit 2), and an
encrypted key is refused instead of OpenSSL prompting for its passphrase on a terminal nobody watches.
"""

from __future__ import annotations

import ssl
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from obdal_common.settings import ObdalSettings

__all__ = ["GatewaySettings"]


class GatewaySettings(ObdalSettings):
    gateway_host: str = Field("127.0.0.1", description="Interface to listen on (0.0.0.0 in containers)")
    gateway_port: int = Field(8080, ge=1, le=65535)
    tls_cert: Path | None = Field(
        None,
        description="PEM certificate chain (the server's first) to serve HTTPS with, HSTS on; "
        "with OBDAL_TLS_KEY. Unset: plain HTTP (behind a TLS-terminating proxy)",
    )
    tls_key: Path | None = Field(
        None, validate_default=True, description="PEM private key (unencrypted) of OBDAL_TLS_CERT"
    )
    admin_token: SecretStr | None = Field(
        None, description="Operator token for /v1/admin; generated and kept under the data dir if unset"
    )
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token for GET /metrics; unset: the operator token is required there"
    )
    metrics_open: bool = Field(
        False,
        description="Serve GET /metrics without any token (only behind a network that keeps it private)",
    )
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = Field(
        (),
        description="Comma-separated CIDRs of the reverse proxies whose X-Forwarded-For is believed; "
        "empty: the client is the TCP peer",
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
    max_concurrent_answers_per_key: int = Field(
        8, ge=1, description="Chat answers one key may have in progress at once, across gateways"
    )
    max_streams_per_session: int = Field(
        5,
        ge=1,
        description="Event streams (GET /v1/sessions/{id}/events) one session may hold open per gateway",
    )
    console_idle_minutes: int = Field(
        60, ge=1, le=24 * 60, description="A console session without a request for this long ends"
    )
    console_session_hours: int = Field(
        12, ge=1, le=24, description="A console session ends this long after sign-in, whatever its use"
    )
    console_secure_cookie: bool = Field(
        False,
        description="Mark the console cookie Secure even on plain HTTP (behind a TLS-terminating "
        "proxy); it is Secure anyway on HTTPS requests",
    )
    signin_failures_per_account: int = Field(
        5, ge=1, description="Failed console sign-ins of one account per window before it is throttled"
    )
    signin_failures_per_ip: int = Field(
        30, ge=1, description="Failed console sign-ins from one address per window before it is throttled"
    )
    signin_window_minutes: int = Field(15, ge=1, description="The window of the sign-in throttle")
    client_send_timeout_s: float = Field(
        30.0, gt=0, description="A client that takes no response data for this long is disconnected"
    )
    pow_cost: int = Field(
        5000,
        ge=1,
        le=1_000_000,
        description="PBKDF2 iterations per attempt of a proof-of-work challenge (about 256 attempts each)",
    )
    pow_expires_s: int = Field(
        300, ge=10, le=3600, description="How long a proof-of-work challenge may be solved"
    )

    @property
    def tls(self) -> bool:
        """Whether the gateway serves HTTPS itself."""
        return self.tls_cert is not None

    @field_validator("tls_cert")
    @classmethod
    def _certificate(cls, value: Path | None) -> Path | None:
        if value is not None and b"-----BEGIN CERTIFICATE-----" not in _read(value):
            raise ValueError(f"{value} holds no PEM certificate")
        return value

    @field_validator("tls_key")
    @classmethod
    def _key_of_the_certificate(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if "tls_cert" not in info.data:  # the certificate is invalid: that error is reported
            return value
        cert: Path | None = info.data["tls_cert"]
        if (cert is None) != (value is None):
            raise ValueError("OBDAL_TLS_CERT and OBDAL_TLS_KEY are set together or not at all")
        if cert is not None and value is not None:
            _read(value)
            try:
                # An empty password: an encrypted key fails here rather than prompting.
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, value, password=b"")
            except ssl.SSLError as exc:
                why = f" ({exc.reason})" if exc.reason else ""  # e.g. KEY_VALUES_MISMATCH
                raise ValueError(
                    f"{value} is not an unencrypted key of OBDAL_TLS_CERT's certificate{why}"
                ) from None
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(ip_network(part.strip()) for part in value.split(",") if part.strip())
        return value


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
