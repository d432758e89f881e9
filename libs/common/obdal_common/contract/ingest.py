"""Ingest's contract: the whole life of a file — bytes, status, vectors — is ingest's, the
app's curated answers (written by its people, embedded here with the app's embedder), and its
website sources (crawled and re-synced here, each page a file).

Served by ``obdal_ingest.bindings``; called by the gateway (``/v1/files``) through
``Ingest(bus)``. Ingest owns the object store's bytes, the file status records (NATS KV)
and the file's passages in the index; nobody else writes them.

Bytes are too large for a NATS message, so an upload is a claim check: the caller puts
the bytes in the object store under a fresh name (:func:`stage`, the one write a caller
makes there) and passes that name in :class:`~obdal_common.schemas.FileUpload`; ingest
owns them from its answer on (keeps them as the file's content, or deletes a duplicate's).
An error answer leaves them to the caller, who deletes them (ingest kept nothing of them).
Every RPC may also answer 503 ``ingest_unavailable`` / ``ingest_timeout`` and 400
``bad_message``.
"""

from __future__ import annotations

from nats.js.object_store import ObjectStore

from obdal_common import subjects
from obdal_common.contract.rpc import Contract, Rpc
from obdal_common.errors import BadRequest, Conflict, NotFound, PayloadTooLarge, UnprocessableContent
from obdal_common.ids import new_id
from obdal_common.schemas import (
    CuratedAnswer,
    CuratedAnswerCreate,
    CuratedAnswerDeleted,
    CuratedAnswerLookup,
    CuratedAnswerPage,
    CuratedAnswerQuery,
    CuratedAnswerUpdate,
    FileAccepted,
    FileList,
    FileListQuery,
    FileLookup,
    FileOutcomeQuery,
    FileReplace,
    FileStatus,
    FileUpload,
    IngestDelete,
    IngestDeleteApp,
    IngestDeleted,
    ServiceStatus,
    SourceCreate,
    SourceDeleted,
    SourceList,
    SourceListQuery,
    SourceLookup,
    SourcePages,
    SourcePagesQuery,
    StatusQuery,
    WebsiteSource,
)

__all__ = ["MAX_SOURCE_PAGES_LIMIT", "MAX_WAIT_S", "Ingest", "stage"]

_QUICK_S = 5.0
# Erasing a file's bytes takes ~15 ms per 128 KB chunk on the server (2.9 s for 20 MB measured).
_ERASE_S = 30.0
# A source's host is resolved before it is accepted (a slow resolver: up to its timeout).
_RESOLVE_S = 5.0
# Deleting a source deletes each of its pages' files (up to OBDAL_MAX_SOURCE_PAGES of them).
_DELETE_SOURCE_S = 120.0
# The most pages one ``source_pages`` answer holds (a page of records well under a NATS message).
MAX_SOURCE_PAGES_LIMIT = 200
# The longest an upload may wait for its outcome (``?wait=``); the outcome RPC waits that long.
MAX_WAIT_S = 120


class Ingest(Contract):
    service = "ingest"

    status = Rpc(subjects.status_subject("ingest"), StatusQuery, ServiceStatus, timeout=1.5)
    """Health of the worker and its index (``GET /v1/status``)."""

    upload = Rpc("obdal.ingest.files.upload", FileUpload, FileAccepted, timeout=_QUICK_S)
    """Record a new file and queue it (``POST /v1/files``); an app's identical content answers
    its existing file with ``duplicate``."""

    replace = Rpc(
        "obdal.ingest.files.replace", FileReplace, FileAccepted, timeout=_QUICK_S, errors=(NotFound,)
    )
    """Queue a new version of a file (``PUT /v1/files/{id}``); 404 ``file_not_found``."""

    get = Rpc("obdal.ingest.files.get", FileLookup, FileStatus, timeout=_QUICK_S, errors=(NotFound,))
    """One file's status (``GET /v1/files/{id}``); 404 ``file_not_found``."""

    list = Rpc("obdal.ingest.files.list", FileListQuery, FileList, timeout=_QUICK_S)
    """Every file of an app (``GET /v1/files``)."""

    outcome = Rpc(
        "obdal.ingest.files.outcome",
        FileOutcomeQuery,
        FileStatus,
        timeout=MAX_WAIT_S + _QUICK_S,
        errors=(NotFound,),
    )
    """The status once the version is ready or failed, or as it stands when the wait runs out
    (``?wait=``); 404 ``file_not_found`` if it was deleted meanwhile."""

    delete = Rpc(
        "obdal.ingest.files.delete", IngestDelete, IngestDeleted, timeout=_ERASE_S, errors=(NotFound,)
    )
    """Delete a file: its passages first (no answer cites it once this returns), then its
    bytes, erased chunk by chunk, and status (``DELETE /v1/files/{id}``); 404 ``file_not_found``."""

    delete_app = Rpc("obdal.ingest.files.delete_app", IngestDeleteApp, IngestDeleted, timeout=30.0)
    """Erase every file of an app, bytes whose upload never finished included
    (``DELETE /v1/files?confirm=true``); ``files_deleted`` counts the status records."""

    # Curated answers. 422 ``invalid_curated_answer`` (no question, an empty one, an empty
    # answer), 413 ``curated_answer_too_large`` (over the per-field limits), 409 when the app
    # has as many as it may keep, 404 ``file_not_found`` for a ``source_file_id`` not of the app.
    answer_create = Rpc(
        "obdal.ingest.answers.create",
        CuratedAnswerCreate,
        CuratedAnswer,
        timeout=_QUICK_S,
        errors=(UnprocessableContent, PayloadTooLarge, Conflict, NotFound),
    )
    """Write a curated answer, its questions embedded (``POST /v1/answers``)."""

    answer_update = Rpc(
        "obdal.ingest.answers.update",
        CuratedAnswerUpdate,
        CuratedAnswer,
        timeout=_QUICK_S,
        errors=(UnprocessableContent, PayloadTooLarge, NotFound),
    )
    """Change one (``PATCH /v1/answers/{id}``); 404 ``answer_not_found``."""

    answer_get = Rpc(
        "obdal.ingest.answers.get", CuratedAnswerLookup, CuratedAnswer, timeout=_QUICK_S, errors=(NotFound,)
    )
    """One curated answer (``GET /v1/answers/{id}``); 404 ``answer_not_found``."""

    answer_list = Rpc(
        "obdal.ingest.answers.list",
        CuratedAnswerQuery,
        CuratedAnswerPage,
        timeout=_QUICK_S,
        errors=(BadRequest,),
    )
    """A page of the app's curated answers (``GET /v1/answers``); 400 ``invalid_cursor``."""

    answer_delete = Rpc(
        "obdal.ingest.answers.delete",
        CuratedAnswerLookup,
        CuratedAnswerDeleted,
        timeout=_QUICK_S,
        errors=(NotFound,),
    )
    """Delete one (``DELETE /v1/answers/{id}``); chat workers' mirrors of the bucket follow
    within moments (a watch), so a question asked in the same instant may still get it."""

    # Website sources. 422 ``invalid_source`` (a bad field, named) or an outbound refusal's code
    # (``private_address``, ``scheme_not_allowed``, …) for a URL that may not be fetched; 409
    # ``too_many_sources`` / ``page_quota_reached``; 404 ``source_not_found``.
    source_create = Rpc(
        "obdal.ingest.sources.create",
        SourceCreate,
        WebsiteSource,
        timeout=_QUICK_S + _RESOLVE_S,
        errors=(UnprocessableContent, Conflict),
    )
    """Record a website source and queue its first sync (``POST /v1/sources``); its host is
    resolved and every address checked before it is accepted."""

    source_get = Rpc(
        "obdal.ingest.sources.get", SourceLookup, WebsiteSource, timeout=_QUICK_S, errors=(NotFound,)
    )
    """One source, with its last sync's figures (``GET /v1/sources/{id}``)."""

    source_list = Rpc("obdal.ingest.sources.list", SourceListQuery, SourceList, timeout=_QUICK_S)
    """The app's sources (``GET /v1/sources``; at most ``OBDAL_MAX_SOURCES_PER_APP``)."""

    source_pages = Rpc(
        "obdal.ingest.sources.pages",
        SourcePagesQuery,
        SourcePages,
        timeout=_QUICK_S,
        errors=(NotFound, BadRequest),
    )
    """A page of a source's pages (``GET /v1/sources/{id}/pages``); 400 ``invalid_cursor``."""

    source_sync = Rpc(
        "obdal.ingest.sources.sync",
        SourceLookup,
        WebsiteSource,
        timeout=_QUICK_S,
        errors=(NotFound, Conflict),
    )
    """Queue a sync now (``POST /v1/sources/{id}/sync``); 409 ``sync_in_progress``."""

    source_delete = Rpc(
        "obdal.ingest.sources.delete",
        SourceLookup,
        SourceDeleted,
        timeout=_DELETE_SOURCE_S,
        errors=(NotFound,),
    )
    """Delete a source: a sync in flight stops, then every page's passages go (no answer cites
    them once this returns), then their bytes and records (``DELETE /v1/sources/{id}``)."""


async def stage(objects: ObjectStore, app_id: str, content: bytes) -> str:
    """Put an upload's bytes in the object store under a fresh name, for :attr:`Ingest.upload`
    or :attr:`Ingest.replace` to take over."""
    name = f"{app_id}/{new_id('upload')}"
    await objects.put(name, content)
    return name
