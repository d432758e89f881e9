"""What goes into the index and what comes back out of it."""

from __future__ import annotations

import uuid

import msgspec

__all__ = ["Chunk", "Hit", "IndexPoint", "SparseVector", "point_id"]

SparseVector = tuple[list[int], list[float]]

_NAMESPACE = uuid.UUID("6f1c1b1e-8f0e-4d5e-9a51-0bda1c0c7a11")


def point_id(app_id: str, file_id: str, position: int, *, version: int = 1) -> str:
    """Deterministic point id: re-indexing the same chunk overwrites, never duplicates.

    A new version of a file gets new ids, so it can be indexed next to the old one
    before the old one is removed.
    """
    return str(uuid.uuid5(_NAMESPACE, f"{app_id}/{file_id}/{version}/{position}"))


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    """A passage of a document, ready to be embedded and indexed."""

    app_id: str
    file_id: str
    filename: str
    position: int
    text: str
    heading: str = ""
    page: int | None = None
    title: str = ""
    version: int = 1
    # A website page's address (its citation links there); empty for an uploaded file.
    url: str = ""

    @property
    def indexed_text(self) -> str:
        """The text both encoders see: title and headings make short passages findable."""
        return "\n".join(part for part in (self.title, self.heading, self.text) if part)


class IndexPoint(msgspec.Struct, frozen=True, kw_only=True):
    chunk: Chunk
    dense: list[float]
    sparse: SparseVector


class Hit(msgspec.Struct, frozen=True, kw_only=True):
    """A retrieved passage with its fused score (its rank among the hits) and its relevance:
    the cosine similarity of its dense vector to the question's, comparable across questions,
    which the chat's relevance threshold is calibrated on (docs/chat.md)."""

    app_id: str
    file_id: str
    filename: str
    position: int
    text: str
    heading: str
    score: float
    page: int | None = None
    relevance: float = 0.0
    url: str = ""
