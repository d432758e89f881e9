"""Obdal retrieval, shared by chat and ingest: one index interface, two Qdrant backends
(Qdrant Edge embedded, a Qdrant server), pluggable dense embedders and the BM25 sparse encoder.

The heavy half of the shared code (qdrant-edge-py, qdrant-client, numpy; the offline embedder
with the ``embed`` extra), kept out of ``obdal_common`` so the gateway and metering never
install it. Submodules: ``chunks`` (what is indexed and found), ``hybrid`` (the index),
``factory`` (opening the configured index once per process), ``backend``/``edge``/
``qdrant_server`` (storage), ``embedders``/``minilm``/``quantized`` (dense vectors) and
``sparse`` (BM25).
"""

from obdal_retrieval.chunks import Chunk, Hit
from obdal_retrieval.factory import close_index, close_indexes, open_index
from obdal_retrieval.hybrid import HybridIndex, SearchMode

__all__ = ["Chunk", "Hit", "HybridIndex", "SearchMode", "close_index", "close_indexes", "open_index"]
