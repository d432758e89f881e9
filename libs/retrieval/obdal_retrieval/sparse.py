"""BM25 sparse vectors, encoded identically for both index backends."""

from __future__ import annotations

import qdrant_edge

from obdal_retrieval.chunks import SparseVector

__all__ = ["Bm25Encoder"]


class Bm25Encoder:
    """Qdrant Edge's BM25 tokenizer, stemmer and saturation (the index adds IDF)."""

    def __init__(self) -> None:
        self._model = qdrant_edge.Bm25(qdrant_edge.Bm25Config(language="english"))

    def documents(self, texts: list[str]) -> list[SparseVector]:
        """Term-frequency-saturated weights for indexed passages."""
        out = []
        for text in texts:
            vec = self._model.embed_document(text)
            out.append((list(vec.indices), list(vec.values)))
        return out

    def query(self, text: str) -> SparseVector:
        """Unit weights for each query term."""
        vec = self._model.embed_query(text)
        return (list(vec.indices), list(vec.values))
