"""Settings shared by every service, read from ``OBDAL_*`` environment variables.

Each service subclasses :class:`ObdalSettings` with its own options and loads it
once at start-up through :func:`load_settings`, which turns a validation failure
into a :class:`~obdal_common.errors.ConfigurationError` naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from obdal_common.errors import ConfigurationError

__all__ = ["ObdalSettings", "load_settings"]

S = TypeVar("S", bound="ObdalSettings")


class ObdalSettings(BaseSettings):
    """Connection and retrieval settings every service needs."""

    model_config = SettingsConfigDict(env_prefix="OBDAL_", extra="ignore", frozen=True)

    nats_url: str = Field("nats://127.0.0.1:4222", description="NATS server(s), comma separated")
    nats_replicas: int = Field(
        1,
        ge=1,
        le=5,
        description="Servers each JetStream stream, bucket and object store is kept on: 3 on a "
        "3-node cluster survives one node lost (docs/reliability.md)",
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    mongo_url: str = "mongodb://127.0.0.1:27017"
    mongo_db: str = "obdal"
    qdrant_url: str | None = Field(
        None, description="Qdrant server URL; unset means the embedded Qdrant Edge index"
    )
    qdrant_api_key: str | None = None
    # Read only when the collection is created: an existing collection keeps its layout.
    qdrant_shard_number: int | None = Field(
        None,
        ge=1,
        description="Shards of a new Qdrant collection; unset: the server's default (one per node)",
    )
    qdrant_replication_factor: int = Field(
        1, ge=1, description="Copies of each shard of a new Qdrant collection: 2 survives one node lost"
    )
    qdrant_write_consistency_factor: int = Field(
        1,
        ge=1,
        description="Replicas that must confirm a write to a new Qdrant collection before it succeeds",
    )
    data_dir: Path = Path(".obdal")

    embed_model: str = Field(
        "obdal/minilm-l6-int8",
        description="Offline 'obdal/minilm-l6-int8' (all-MiniLM-L6-v2) or 'obdal/hashing-384', "
        "or any litellm embedding model id",
    )
    embed_batch_size: int = Field(64, ge=1, le=2048)
    embed_runners: int = Field(
        0,
        ge=0,
        le=64,
        description="Offline embedder runs at once, one thread each (0: one per core this process may use)",
    )
    model_cache_dir: Path | None = Field(
        None,
        description="Where the offline embedder's int8 model is prepared once and kept "
        "(default $XDG_CACHE_HOME/obdal/models or ~/.cache/obdal/models)",
    )
    retrieval_mode: Literal["auto", "hybrid", "sparse", "dense"] = Field(
        "auto",
        description="auto: hybrid, but BM25 alone with the hashing embedder (it measured better)",
    )
    index_compact_after_s: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="How long after a deletion the embedded index rewrites its segments, so deleted "
        "passages leave the disk (docs/security.md)",
    )

    event_publish_retry_s: float = Field(
        120.0, gt=0, description="How long publishing a usage/turn event is retried through a NATS outage"
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_endpoint: str | None = Field(None, description="OTLP/HTTP endpoint, e.g. http://jaeger:4318")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Prometheus /metrics port of a worker (the gateway uses its own)"
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Interface of the metrics port (0.0.0.0 in containers)"
    )
    metrics_sample_s: float = Field(
        5.0, gt=0, description="How often queue depth and consumer lag are sampled"
    )

    @property
    def index_dir(self) -> Path:
        """Where the embedded index keeps its shards."""
        return self.data_dir / "index"


def _describe(error: ValidationError, cls: type[BaseSettings]) -> str:
    prefix = str(cls.model_config.get("env_prefix", ""))
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        lines.append(f"  {prefix}{field.upper()}: {item['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build ``cls`` from the environment (and ``overrides``), or fail clearly."""
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, cls)) from None
