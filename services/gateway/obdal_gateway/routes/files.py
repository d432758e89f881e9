"""``/v1/files``: upload documents, follow their ingestion, replace and delete them."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Response, delete, get, post, put
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.openapi import ResponseSpec
from litestar.params import Body, Parameter

from obdal_common import subjects
from obdal_common.contract.ingest import MAX_WAIT_S, stage
from obdal_common.errors import BadRequest, DependencyUnavailable, PayloadTooLarge, UnprocessableContent
from obdal_common.messaging import erase_object
from obdal_common.schemas import (
    FileAccepted,
    FileListQuery,
    FileLookup,
    FileOutcomeQuery,
    FileReplace,
    FileStatus,
    FileUpload,
    IngestDelete,
    IngestDeleteApp,
)
from obdal_gateway.auth import Principal
from obdal_gateway.error_responses import error_body
from obdal_gateway.state import Gateway
from obdal_gateway.uploads import detect_content_type, safe_filename

__all__ = [
    "delete_all_files",
    "delete_file",
    "get_file",
    "list_files",
    "public_file",
    "replace_file",
    "upload_file",
]

Multipart = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)]

_DEFAULT_WAIT_S = 60
_MAX_WAIT_S = MAX_WAIT_S  # as long as the outcome RPC may wait
# How often a wait for an outcome checks that NATS is still there to carry the answer.
_CHECK_S = 1.0
T = TypeVar("T")
Wait = Annotated[
    str | None,
    Parameter(
        description=f"Answer with the outcome: `true` waits up to {_DEFAULT_WAIT_S} s, a number up to "
        f"{_MAX_WAIT_S} s; 200 once ready, 422 if it failed, 202 with the status as it stands if "
        "the time runs out. Absent, `false` or `0`: 202 at once.",
    ),
]
# What an upload may answer besides its 202, for the OpenAPI document (and clients made from it).
_OUTCOMES = {
    200: ResponseSpec(
        data_container=dict[str, Any],
        description="Ready (with `wait`; the file's status as `GET /v1/files/{id}` shows it), or a "
        "duplicate of an existing file (`duplicate: true`)",
    ),
    422: ResponseSpec(
        data_container=dict[str, Any],
        description="With `wait`: ingestion failed; `error` says why and `file` is the file's status",
    ),
}


def public_file(status: FileStatus) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(status)
    body.pop("app_id", None)
    body.pop("object_name", None)  # ingest's business
    return body


def _wait_s(wait: str | None) -> int:
    """Seconds an upload waits for its outcome (0: none); checked before anything is stored."""
    if wait is None or wait == "false":
        return 0
    if wait == "true":
        return _DEFAULT_WAIT_S
    if wait.isascii() and wait.isdigit() and int(wait) <= _MAX_WAIT_S:
        return int(wait)
    raise BadRequest(
        f"wait must be true, false or a number of seconds from 0 to {_MAX_WAIT_S}", code="invalid_wait"
    )


async def _while_connected(connected: Callable[[], bool], call: Awaitable[T]) -> T:
    """``call``'s answer, or a 503 within a second of this gateway losing NATS: no answer
    could reach it then, and a lost bus must never be a hang until the call's timeout."""
    task = asyncio.ensure_future(call)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_CHECK_S)
            if done:
                return task.result()
            if not connected():
                raise DependencyUnavailable("the message bus is unavailable", code="nats_unavailable")
    finally:
        task.cancel()  # nothing when it is done


async def _outcome(
    gw: Gateway, status: FileStatus, wait_s: int, *, extra: dict[str, Any] | None = None
) -> Response[dict[str, Any]]:
    """The outcome of ``status``'s version within ``wait_s`` seconds: 200 ready, 422 failed (the
    reason as the error, the status as ``file``), or, when the wait runs out first, 202 with the
    status as it stands. ``extra`` joins the status (``duplicate``). 404 ``file_not_found`` if
    the file is deleted meanwhile."""
    query = FileOutcomeQuery(
        app_id=status.app_id, file_id=status.file_id, version=status.version, wait_s=wait_s
    )
    found = await _while_connected(lambda: gw.nc.is_connected, gw.ingest.outcome(query, timeout=wait_s + 5))
    body = {**public_file(found), **(extra or {})}
    if found.status == "failed":
        error = error_body("file_failed", found.error or "the file could not be ingested")
        return Response({**error, "file": body}, status_code=UnprocessableContent.status)
    return Response(body, status_code=200 if found.status == "ready" else 202)


async def _owned(gw: Gateway, app_id: str, file_id: str) -> FileStatus:
    """The app's file (404 ``file_not_found`` from ingest for an unknown or ill-formed id)."""
    return await gw.ingest.get(FileLookup(app_id=app_id, file_id=file_id))


async def _duplicate(gw: Gateway, holder: FileStatus, wait_s: int) -> Response[dict[str, Any]]:
    """``200`` naming the app's existing file with the same content; with a wait, its outcome."""
    if wait_s:
        return await _outcome(gw, holder, wait_s, extra={"duplicate": True})
    body = {"file_id": holder.file_id, "status": holder.status, "filename": holder.filename}
    return Response({**body, "duplicate": True}, status_code=200)


async def _read_upload(gw: Gateway, data: dict[str, Any]) -> tuple[str, bytes, str]:
    """(safe filename, bytes, content type) of the multipart field ``file``, or a 400/413/415."""
    upload = data.get("file")
    if not isinstance(upload, UploadFile):
        raise BadRequest("send the document as multipart form field 'file'", code="missing_file")
    content = await upload.read()
    if len(content) > gw.settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"files are limited to {gw.settings.max_upload_bytes} bytes", code="file_too_large"
        )
    if not content:
        raise BadRequest("the file is empty", code="empty_file")
    filename = safe_filename(upload.filename)
    return filename, content, detect_content_type(filename, content)


async def _stage_upload(gw: Gateway, app_id: str, data: dict[str, Any]) -> FileUpload:
    """The multipart upload checked (400/413/415) and its bytes staged for ingest, which settles
    duplicates (racing ones too)."""
    filename, content, content_type = await _read_upload(gw, data)
    return FileUpload(
        app_id=app_id,
        filename=filename,
        content_type=content_type,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        staged=await stage(gw.objects, app_id, content),
    )


async def _hand_over(gw: Gateway, staged: str, call: Awaitable[FileAccepted]) -> FileAccepted:
    """Ingest's answer to an upload or replacement of the bytes ``staged``. From its answer on the
    bytes are ingest's; when the call fails they are still ours, and withdrawn (best-effort:
    ``DELETE /v1/files?confirm=true`` sweeps the app's leftovers)."""
    try:
        return await call
    except Exception:
        with contextlib.suppress(Exception):  # erased, not only purged (docs/security.md, finding 3)
            await erase_object(gw.js, gw.objects, bucket=subjects.OBJECT_STORE_FILES, name=staged)
        raise


@post(
    "/v1/files",
    status_code=202,
    summary="Upload a document (multipart, field 'file')",
    description="202 when queued; 200 with `duplicate: true` and the existing file when the app "
    "already has a file with identical content (unless that one failed). With `wait`, the answer "
    "waits for the outcome: 200 ready, 422 failed, 202 if the wait ran out first.",
    responses=_OUTCOMES,
    opt={"scope": "files:write"},
)
async def upload_file(
    principal: Principal, gw: Gateway, data: Multipart, wait: Wait = None
) -> Response[dict[str, Any]]:
    """Store the bytes and queue ingestion: ``202 {"file_id","status":"queued"}``."""
    wait_s = _wait_s(wait)
    upload = await _stage_upload(gw, principal.app_id, data)
    accepted = await _hand_over(gw, upload.staged, gw.ingest.upload(upload))
    if accepted.duplicate:
        return await _duplicate(gw, accepted.file, wait_s)
    status = accepted.file
    await gw.audit.record(
        "file.uploaded",
        app_id=principal.app_id,
        actor=principal.key_id,
        target=status.file_id,
        detail={"filename": upload.filename, "sha256": upload.sha256},
    )
    if wait_s:
        return await _outcome(gw, status, wait_s)
    body = {"file_id": status.file_id, "status": "queued", "filename": upload.filename}
    return Response(body, status_code=202)


@put(
    "/v1/files/{file_id:str}",
    status_code=202,
    summary="Replace a file's content (multipart, field 'file')",
    description="The new version is indexed before the old one's passages are removed: the file "
    "stays answerable throughout. If the new version fails, the old one stays searchable. "
    "`wait` as for uploads: 200 ready, 422 failed, 202 if the wait ran out first.",
    responses={422: _OUTCOMES[422]},
    opt={"scope": "files:write"},
)
async def replace_file(
    principal: Principal, gw: Gateway, file_id: str, data: Multipart, wait: Wait = None
) -> Response[dict[str, Any]]:
    wait_s = _wait_s(wait)
    current = await _owned(gw, principal.app_id, file_id)
    upload = await _stage_upload(gw, principal.app_id, data)
    replacement = FileReplace(**msgspec.structs.asdict(upload), file_id=current.file_id)
    status = (await _hand_over(gw, upload.staged, gw.ingest.replace(replacement))).file
    await gw.audit.record(
        "file.replaced",
        app_id=principal.app_id,
        actor=principal.key_id,
        target=file_id,
        detail={"filename": upload.filename, "version": str(status.version), "sha256": status.sha256},
    )
    if wait_s:
        return await _outcome(gw, status, wait_s)
    body = {"file_id": file_id, "status": "queued", "filename": upload.filename, "version": status.version}
    return Response(body, status_code=202)


@get("/v1/files", summary="List the app's files", opt={"scope": "files:read"})
async def list_files(principal: Principal, gw: Gateway) -> dict[str, Any]:
    listed = await gw.ingest.list(FileListQuery(app_id=principal.app_id))
    return {"files": [public_file(s) for s in listed.files]}


@get("/v1/files/{file_id:str}", summary="A file's ingestion status", opt={"scope": "files:read"})
async def get_file(principal: Principal, gw: Gateway, file_id: str) -> dict[str, Any]:
    return public_file(await _owned(gw, principal.app_id, file_id))


@delete(
    "/v1/files/{file_id:str}",
    status_code=200,
    summary="Delete a file: bytes, vectors and status",
    opt={"scope": "files:write"},
)
async def delete_file(principal: Principal, gw: Gateway, file_id: str) -> dict[str, Any]:
    # Vectors first, then bytes and status: once this returns, no answer can cite the file.
    deleted = await gw.ingest.delete(IngestDelete(app_id=principal.app_id, file_id=file_id))
    await gw.audit.record("file.deleted", app_id=principal.app_id, actor=principal.key_id, target=file_id)
    return {"file_id": file_id, "deleted": True, "vectors_deleted": deleted.vectors_deleted}


@delete(
    "/v1/files",
    status_code=200,
    summary="Delete every file of the app (requires confirm=true)",
    description="Erases all of the app's documents: every vector, every stored file and status record.",
    opt={"scope": "files:write"},
)
async def delete_all_files(principal: Principal, gw: Gateway, confirm: str = "") -> dict[str, Any]:
    if confirm != "true":
        raise BadRequest(
            "this erases every document of the app; repeat with ?confirm=true", code="confirmation_required"
        )
    # Every vector, status record and stored byte of the app, bytes of unfinished uploads included.
    deleted = await gw.ingest.delete_app(IngestDeleteApp(app_id=principal.app_id))
    await gw.audit.record(
        "files.erased",
        app_id=principal.app_id,
        actor=principal.key_id,
        detail={"files": str(deleted.files_deleted), "vectors": str(deleted.vectors_deleted)},
    )
    return {
        "deleted": True,
        "files_deleted": deleted.files_deleted,
        "vectors_deleted": deleted.vectors_deleted,
    }
