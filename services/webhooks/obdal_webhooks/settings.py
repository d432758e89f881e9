"""Webhooks settings (``OBDAL_*``).

The default retry schedule is the one the Standard Webhooks specification suggests (and Svix
uses): after the first try, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h, so a delivery is tried
for 27 h 35 min before it is given up: a receiver down for a day still gets everything.

The e-mail of a new handoff (``OBDAL_SMTP_*``, ``obdal_webhooks.handoff_mail``) is off unless
``OBDAL_SMTP_HOST`` is set; its retries span about an hour (an e-mail a day late is no use to a
customer waiting for a person), then it is given up with an audit entry.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from obdal_common.outbound import OutboundSettings
from obdal_webhooks.addresses import parse_mailbox

__all__ = ["SmtpSecurity", "WebhooksSettings"]

SmtpSecurity = Literal["starttls", "tls", "none"]


def _delays(value: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise ValueError("expected seconds, comma separated (e.g. 5,300,1800)") from None
    if any(delay < 0 for delay in delays):
        raise ValueError("retry delays must not be negative")
    return delays


def _one_line(value: str, what: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{what} must be on one line")
    return value.strip()


class WebhooksSettings(OutboundSettings):
    webhook_retry_schedule: str = Field(
        "5,300,1800,7200,18000,36000,36000",
        description="Seconds to wait before each retry of a failed delivery, comma separated",
    )
    webhook_timeout_s: float = Field(10.0, gt=0, le=60, description="Longest one delivery attempt may take")
    webhook_max_response_bytes: int = Field(
        64 * 1024, ge=1024, description="Most bytes of a receiver's answer read (a longer one fails)"
    )
    webhook_allow_http: bool = Field(
        False, description="Accept http:// endpoint URLs (https only by default: payloads hold transcripts)"
    )
    webhook_disable_after_s: float = Field(
        5 * 24 * 3600.0,
        gt=0,
        description="An endpoint failing every attempt for this long is disabled (with an audit entry)",
    )
    webhook_concurrency: int = Field(16, ge=1, le=256, description="Deliveries one replica sends at once")
    webhook_tick_s: float = Field(
        0.5, gt=0, le=60, description="How often a replica looks for due deliveries"
    )
    max_webhooks_per_app: int = Field(20, ge=1, le=1000, description="Most endpoints an app may have")
    webhooks_mongo_wait_s: float = Field(
        120.0, gt=0, description="How long the webhooks service waits for MongoDB at start"
    )

    # --- the handoff e-mail (docs/handoff.md, docs/webhooks.md#e-mail) ---------------------
    # Declared in this order: the checks of the later ones read the earlier ones.
    smtp_host: str = Field("", description="SMTP server the handoff e-mails go through; empty: no e-mail")
    smtp_port: int = Field(587, ge=1, le=65535, description="Its port (587 STARTTLS, 465 TLS, 25)")
    smtp_security: SmtpSecurity = Field(
        "starttls",
        description="starttls (required, not opportunistic), tls (TLS from the first byte, port 465) or"
        " none (plain text: only for a relay on loopback or the same host)",
    )
    smtp_username: str = Field("", description="SMTP user name (empty: no authentication)")
    smtp_password: SecretStr = Field(SecretStr(""), description="SMTP password, with OBDAL_SMTP_USERNAME")
    smtp_from: str = Field(
        "",
        validate_default=True,
        description="The From of the e-mails, e.g. 'Obdal <support-bot@example.com>'; required with a host",
    )
    smtp_timeout_s: float = Field(30.0, gt=0, le=300, description="Longest one SMTP step may take")
    smtp_retry_schedule: str = Field(
        "10,30,60,120,300,600,900,1500",
        description="Seconds before each retry of an e-mail the server did not take (59 min in all)",
    )
    smtp_max_per_app_hour: int = Field(
        100, ge=1, description="Most handoff e-mails one app may have sent in any hour (the rest: none)"
    )
    public_url: str = Field(
        "",
        description="Where people reach this Obdal (https://obdal.example.com), for the console link and"
        " the API calls in the e-mail; empty: they are shown with $OBDAL",
    )

    @field_validator("webhook_retry_schedule", "smtp_retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        _delays(value)
        return value

    @field_validator("smtp_host")
    @classmethod
    def _host(cls, value: str) -> str:
        host = _one_line(value, "the host")
        if any(c.isspace() or c in "/@" for c in host):
            raise ValueError("expected a host name or address, e.g. smtp.example.com")
        return host

    @field_validator("smtp_username")
    @classmethod
    def _username(cls, value: str) -> str:
        return _one_line(value, "the user name")

    @field_validator("smtp_password")
    @classmethod
    def _password(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        secret = value.get_secret_value()
        if any(c in secret for c in "\r\n\0"):
            raise ValueError("the password must be on one line")
        if secret and not info.data.get("smtp_username"):
            raise ValueError("a password needs OBDAL_SMTP_USERNAME too")
        return value

    @field_validator("smtp_from")
    @classmethod
    def _sender(cls, value: str, info: ValidationInfo) -> str:
        value = _one_line(value, "the address")
        if not value:
            if info.data.get("smtp_host"):
                raise ValueError("required when OBDAL_SMTP_HOST is set (e.g. 'Obdal <bot@example.com>')")
            return value
        parse_mailbox(value)  # its ValueError says what is wrong
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        url = _one_line(value, "the URL").rstrip("/")
        if url and not (url.startswith(("https://", "http://")) and len(url) > len("https://")):
            raise ValueError("expected an http(s) URL, e.g. https://obdal.example.com")
        if any(c.isspace() for c in url):
            raise ValueError("expected a URL without spaces")
        return url

    def retry_delays(self) -> tuple[float, ...]:
        """The wait before each retry, in order (empty: one try only)."""
        return _delays(self.webhook_retry_schedule)

    def smtp_delays(self) -> tuple[float, ...]:
        """The wait before each retry of a handoff e-mail (empty: one try only)."""
        return _delays(self.smtp_retry_schedule)

    @property
    def email_on(self) -> bool:
        return bool(self.smtp_host)
