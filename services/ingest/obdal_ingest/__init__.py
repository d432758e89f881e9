"""Obdal ingest: the life of a file — bytes, status, parsing, chunking, embedding, indexing.

Public surface: ``main.main`` (the ``obdal-ingest`` entry point), ``main.serve`` (what
``obdal up`` runs) and ``settings.IngestSettings``; other services reach it only through
``obdal_common.contract.Ingest``.
"""
