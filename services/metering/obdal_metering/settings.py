"""Metering settings (``OBDAL_*``)."""

from __future__ import annotations

from pydantic import Field

from obdal_common.settings import ObdalSettings

__all__ = ["MeteringSettings"]


class MeteringSettings(ObdalSettings):
    metering_batch_size: int = Field(200, ge=1, le=10000, description="Events written per batch")
    metering_batch_wait_s: float = Field(0.1, gt=0, description="Longest wait to fill a batch")
    metering_max_deliver: int = Field(
        50, ge=2, description="Deliveries of an event before it is dead-lettered"
    )
    metering_ack_wait_s: float = Field(
        30.0, gt=1, description="How long an unacked event batch waits before it is redelivered"
    )
    metering_retention_sweep_s: float = Field(
        300.0, gt=0, description="How often session content past an app's retention is erased"
    )
    metering_mongo_wait_s: float = Field(
        120.0, gt=0, description="How long metering waits for MongoDB at start before giving up"
    )
    analytics_refresh_s: float = Field(
        2.0,
        gt=0,
        description="How long a day's analytics wait after a change before they are recomputed",
    )
