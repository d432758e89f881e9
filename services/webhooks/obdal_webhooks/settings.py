"""Webhooks settings (``OBDAL_*``).

The default retry schedule is the one the Standard Webhooks specification suggests (and Svix
uses): after the first try, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h, so a delivery is tried
for 27 h 35 min before it is given up: a receiver down for a day still gets everything.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from obdal_common.outbound import OutboundSettings

__all__ = ["WebhooksSettings"]


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

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        try:
            delays = [float(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise ValueError("expected seconds, comma separated (e.g. 5,300,1800)") from None
        if any(delay < 0 for delay in delays):
            raise ValueError("retry delays must not be negative")
        return value

    def retry_delays(self) -> tuple[float, ...]:
        """The wait before each retry, in order (empty: one try only)."""
        return tuple(float(part) for part in self.webhook_retry_schedule.split(",") if part.strip())
