"""Ingest worker settings (``OBDAL_*``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from obdal_common.settings import ObdalSettings

__all__ = ["IngestSettings"]


class IngestSettings(ObdalSettings):
    chunk_tokens: int = Field(200, ge=32, le=2000, description="Target chunk size in tokens")
    chunk_overlap_tokens: int = Field(30, ge=0, description="Tokens repeated between chunks")
    ingest_max_deliver: int = Field(5, ge=1, le=100, description="Attempts before a job fails")
    ingest_ack_wait_s: float = Field(60.0, gt=1)
    max_pages: int = Field(1000, ge=1, description="Longest accepted PDF, in pages (longer ones fail)")
    parse_timeout_s: float = Field(120.0, gt=0, description="Parsing time after which a file fails")
    parse_memory_mb: int = Field(2048, ge=256, description="Memory ceiling of the parser process")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IngestSettings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("OBDAL_CHUNK_OVERLAP_TOKENS must be smaller than OBDAL_CHUNK_TOKENS")
        return self
