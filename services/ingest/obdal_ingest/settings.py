"""Ingest worker settings (``OBDAL_*``).

The per-file caps are sized from what the largest legitimate document the other limits let in
produces with the default chunking (measured with :func:`obdal_ingest.chunking.chunk_text`):
1,000 dense pages (``OBDAL_MAX_PAGES``; five 90-word paragraphs a page) are 3.6 M characters
and 5,000 chunks, ~730 characters a chunk. So 4 M characters fit such a manual, and 8,000
chunks fit what 4 M characters of prose make, leaving the chunk cap to catch text cut into
tiny pieces. Embedding runs at ~9 chunks/s on two cores (docs/ingestion.md): 8,000 chunks are
~15 minutes of one worker, 20,000 an hour ~37 minutes.
"""

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
    max_file_chars: int = Field(4_000_000, ge=1000, description="Most characters of text one file may hold")
    max_file_chunks: int = Field(8000, ge=1, description="Most chunks one file may become")
    app_chunks_per_hour: int = Field(
        20_000, ge=1, description="Most chunks an app's files may become in any rolling hour"
    )
    max_curated_answers: int = Field(
        1000, ge=1, description="Most curated answers an app may keep (docs/support.md)"
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IngestSettings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("OBDAL_CHUNK_OVERLAP_TOKENS must be smaller than OBDAL_CHUNK_TOKENS")
        return self
