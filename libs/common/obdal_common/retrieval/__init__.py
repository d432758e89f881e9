"""Retrieval shared by chat and ingest: one index interface, two Qdrant backends,
pluggable dense embedders and the BM25 sparse encoder."""

from obdal_common.retrieval.chunks import Chunk, Hit
from obdal_common.retrieval.factory import close_indexes, open_index
from obdal_common.retrieval.hybrid import HybridIndex

__all__ = ["Chunk", "Hit", "HybridIndex", "close_indexes", "open_index"]
