"""What goes into the index and what comes back out of it."""

from __future__ import annotations

import uuid

import msgspec

__all__ = ["Chunk", "Hit", "IndexPoint", "SparseVector", "point_id"]

SparseVector = tuple[list[int], list[float]]

_NAMESPACE = uuid.UUID("6f1c1b1e-8f0e-4d5e-9a51-0bda1c0c7a11")


def point_id(app_id: str, file_id: str, position: int) -> str:
    """Deterministic point id: re-indexing the same chunk overwrites, never duplicates."""
    return str(uuid.uuid5(_NAMESPACE, f"{app_id}/{file_id}/{position}"))


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    """A passage of a document, ready to be embedded and indexed."""

    app_id: str
    file_id: str
    filename: str
    position: int
    text: str
    heading: str = ""

    @property
    def indexed_text(self) -> str:
        """The text both encoders see: headings make short passages findable."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text


class IndexPoint(msgspec.Struct, frozen=True, kw_only=True):
    chunk: Chunk
    dense: list[float]
    sparse: SparseVector


class Hit(msgspec.Struct, frozen=True, kw_only=True):
    """A retrieved passage with its fused score."""

    app_id: str
    file_id: str
    filename: str
    position: int
    text: str
    heading: str
    score: float
