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

from obdal_common.outbound import OutboundSettings

__all__ = ["IngestSettings"]


class IngestSettings(OutboundSettings):
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

    # Website sources (docs/ingestion.md, "Websites"); what they may reach: OutboundSettings.
    max_sources_per_app: int = Field(50, ge=1, description="Most website sources an app may have")
    max_source_pages: int = Field(10_000, ge=1, description="Most pages one source may crawl")
    app_max_pages: int = Field(20_000, ge=1, description="Most website pages an app may hold, all sources")
    app_max_page_bytes: int = Field(
        1024 * 1024 * 1024, ge=1, description="Most bytes of website pages an app may hold, all sources"
    )
    crawl_concurrency: int = Field(2, ge=1, le=64, description="Syncs one ingest worker runs at once")
    crawl_host_concurrency: int = Field(2, ge=1, le=16, description="Requests at once to one website host")
    crawl_delay_s: float = Field(0.25, ge=0, le=60, description="Pause between two requests to a host")
    crawl_timeout_s: float = Field(20.0, gt=0, le=300, description="Longest one page request may take")
    source_tick_s: float = Field(5.0, gt=0, le=3600, description="How often a worker looks for due syncs")
    source_lease_s: float = Field(60.0, ge=5, le=3600, description="How long a sync's claim lasts unrenewed")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IngestSettings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("OBDAL_CHUNK_OVERLAP_TOKENS must be smaller than OBDAL_CHUNK_TOKENS")
        return self
