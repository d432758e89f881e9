"""``/v1/files``: upload documents, follow their ingestion, replace and delete them."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.openapi import ResponseSpec
from litestar.params import Body, Parameter
from nats.js.errors import NotFoundError, ObjectNotFoundError

from obdal_common import subjects
from obdal_common.errors import BadRequest, NotFound, PayloadTooLarge, UnprocessableContent
from obdal_common.files import object_name
from obdal_common.ids import is_id, new_id
from obdal_common.messaging import request as nats_request
from obdal_common.schemas import FileStatus, IngestDelete, IngestDeleteApp, IngestDeleted, IngestJob, encode
from obdal_common.telemetry import inject_headers
from obdal_gateway.auth import Principal, authenticate
from obdal_gateway.error_responses import error_body
from obdal_gateway.state import Gateway
from obdal_gateway.uploads import detect_content_type, safe_filename

__all__ = ["delete_all_files", "delete_file", "get_file", "list_files", "replace_file", "upload_file"]

Multipart = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)]

_DEFAULT_WAIT_S = 60
_MAX_WAIT_S = 120
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


def _public(status: FileStatus) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(status)
    body.pop("app_id", None)
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


async def _outcome(
    gw: Gateway, status: FileStatus, wait_s: int, *, extra: dict[str, Any] | None = None
) -> Response[dict[str, Any]]:
    """The outcome of ``status``'s version within ``wait_s`` seconds: 200 ready, 422 failed (the
    reason as the error, the status as ``file``), or, when the wait runs out first, 202 with the
    status as it stands. ``extra`` joins the status (``duplicate``)."""
    found = await gw.files.outcome(
        status.app_id,
        status.file_id,
        version=status.version,
        wait_s=wait_s,
        connected=lambda: gw.nc.is_connected,
    )
    if found is None:
        raise NotFound(f"file {status.file_id} was deleted while waiting for it", code="file_not_found")
    body = {**_public(found), **(extra or {})}
    if found.status == "failed":
        error = error_body("file_failed", found.error or "the file could not be ingested")
        return Response({**error, "file": body}, status_code=UnprocessableContent.status)
    return Response(body, status_code=200 if found.status == "ready" else 202)


async def _owned(gw: Gateway, app_id: str, file_id: str) -> FileStatus:
    status = await gw.files.get(app_id, file_id) if is_id("file", file_id) else None
    if status is None:
        raise NotFound(f"no file {file_id}", code="file_not_found")
    return status


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


async def _store_and_queue(gw: Gateway, status: FileStatus, content: bytes) -> None:
    """Bytes into the object store, then the job onto the work queue (the status is already in KV)."""
    name = object_name(status.app_id, status.file_id)
    await gw.objects.put(name, content)
    job = IngestJob(
        app_id=status.app_id,
        file_id=status.file_id,
        filename=status.filename,
        content_type=status.content_type,
        size=status.size,
        sha256=status.sha256,
        object_name=name,
        version=status.version,
    )
    msg_id = f"{status.file_id}.v{status.version}"  # JetStream drops a re-published duplicate
    await gw.js.publish(subjects.INGEST_JOB, encode(job), headers=inject_headers({"Nats-Msg-Id": msg_id}))


@post(
    "/v1/files",
    status_code=202,
    summary="Upload a document (multipart, field 'file')",
    description="202 when queued; 200 with `duplicate: true` and the existing file when the app "
    "already has a file with identical content (unless that one failed). With `wait`, the answer "
    "waits for the outcome: 200 ready, 422 failed, 202 if the wait ran out first.",
    responses=_OUTCOMES,
)
async def upload_file(
    request: Request[Any, Any, Any], gw: Gateway, data: Multipart, wait: Wait = None
) -> Response[dict[str, Any]]:
    """Store the bytes and queue ingestion: ``202 {"file_id","status":"queued"}``."""
    principal = await authenticate(request, gw, scope="files:write")
    wait_s = _wait_s(wait)
    filename, content, content_type = await _read_upload(gw, data)
    sha256 = hashlib.sha256(content).hexdigest()
    # Most duplicates end here; claim_hash below settles identical uploads that race.
    if existing := await gw.files.holder(principal.app_id, sha256):
        return await _duplicate(gw, existing, wait_s)
    now = datetime.now(UTC)
    status = FileStatus(
        file_id=new_id("file"),
        app_id=principal.app_id,
        filename=filename,
        status="queued",
        size=len(content),
        content_type=content_type,
        sha256=sha256,
        created_at=now,
        updated_at=now,
    )
    # The status goes in first, so a racing identical upload that loses the claim finds its holder.
    await gw.files.put(status)
    holder = await gw.files.claim_hash(status)
    if holder is not None:
        await gw.files.delete(status.app_id, status.file_id)
        return await _duplicate(gw, holder, wait_s)
    await _store_and_queue(gw, status, content)
    await gw.audit.record(
        "file.uploaded",
        app_id=principal.app_id,
        actor=principal.key_id,
        target=status.file_id,
        detail={"filename": filename, "sha256": sha256},
    )
    if wait_s:
        return await _outcome(gw, status, wait_s)
    return Response({"file_id": status.file_id, "status": "queued", "filename": filename}, status_code=202)


@put(
    "/v1/files/{file_id:str}",
    status_code=202,
    summary="Replace a file's content (multipart, field 'file')",
    description="The new version is indexed before the old one's passages are removed: the file "
    "stays answerable throughout. If the new version fails, the old one stays searchable. "
    "`wait` as for uploads: 200 ready, 422 failed, 202 if the wait ran out first.",
    responses={422: _OUTCOMES[422]},
)
async def replace_file(
    request: Request[Any, Any, Any], gw: Gateway, file_id: str, data: Multipart, wait: Wait = None
) -> Response[dict[str, Any]]:
    principal = await authenticate(request, gw, scope="files:write")
    wait_s = _wait_s(wait)
    current = await _owned(gw, principal.app_id, file_id)
    filename, content, content_type = await _read_upload(gw, data)
    await gw.files.forget_hash(current)
    status = msgspec.structs.replace(
        current,
        filename=filename,
        status="queued",
        size=len(content),
        content_type=content_type,
        sha256=hashlib.sha256(content).hexdigest(),
        updated_at=datetime.now(UTC),
        version=current.version + 1,
        progress=0,
        error=None,
        started_at=None,
        finished_at=None,
    )
    await gw.files.put(status)
    await gw.files.remember_hash(status)
    await _store_and_queue(gw, status, content)
    await gw.audit.record(
        "file.replaced",
        app_id=principal.app_id,
        actor=principal.key_id,
        target=file_id,
        detail={"filename": filename, "version": str(status.version), "sha256": status.sha256},
    )
    if wait_s:
        return await _outcome(gw, status, wait_s)
    body = {"file_id": file_id, "status": "queued", "filename": filename, "version": status.version}
    return Response(body, status_code=202)


@get("/v1/files", summary="List the app's files")
async def list_files(request: Request[Any, Any, Any], gw: Gateway) -> dict[str, Any]:
    principal = await authenticate(request, gw, scope="files:read")
    return {"files": [_public(s) for s in await gw.files.list(principal.app_id)]}


@get("/v1/files/{file_id:str}", summary="A file's ingestion status")
async def get_file(request: Request[Any, Any, Any], gw: Gateway, file_id: str) -> dict[str, Any]:
    principal = await authenticate(request, gw, scope="files:read")
    return _public(await _owned(gw, principal.app_id, file_id))


async def _erase_bytes_and_status(gw: Gateway, app_id: str, file_id: str) -> None:
    with contextlib.suppress(ObjectNotFoundError, NotFoundError):  # already gone is fine
        await gw.objects.delete(object_name(app_id, file_id))
    await gw.files.delete(app_id, file_id)


@delete("/v1/files/{file_id:str}", status_code=200, summary="Delete a file: bytes, vectors and status")
async def delete_file(request: Request[Any, Any, Any], gw: Gateway, file_id: str) -> dict[str, Any]:
    principal = await authenticate(request, gw, scope="files:write")
    await _owned(gw, principal.app_id, file_id)
    # Vectors first: once this returns, no answer can cite the file.
    deleted = await nats_request(
        gw.nc,
        subjects.INGEST_DELETE,
        IngestDelete(app_id=principal.app_id, file_id=file_id),
        IngestDeleted,
        timeout=gw.settings.request_timeout_s,
        what="ingest",
    )
    await _erase_bytes_and_status(gw, principal.app_id, file_id)
    await gw.audit.record("file.deleted", app_id=principal.app_id, actor=principal.key_id, target=file_id)
    return {"file_id": file_id, "deleted": True, "vectors_deleted": deleted.vectors_deleted}


async def _object_names_of(gw: Gateway, principal: Principal) -> list[str]:
    prefix = object_name(principal.app_id, "")
    try:
        infos = await gw.objects.list()
    except NotFoundError:  # the store is empty
        return []
    return [info.name for info in infos if info.name.startswith(prefix) and not info.deleted]


@delete(
    "/v1/files",
    status_code=200,
    summary="Delete every file of the app (requires confirm=true)",
    description="Erases all of the app's documents: every vector, every stored file and status record.",
)
async def delete_all_files(request: Request[Any, Any, Any], gw: Gateway, confirm: str = "") -> dict[str, Any]:
    principal = await authenticate(request, gw, scope="files:write")
    if confirm != "true":
        raise BadRequest(
            "this erases every document of the app; repeat with ?confirm=true", code="confirmation_required"
        )
    deleted = await nats_request(
        gw.nc,
        subjects.INGEST_DELETE_APP,
        IngestDeleteApp(app_id=principal.app_id),
        IngestDeleted,
        timeout=gw.settings.request_timeout_s,
        what="ingest",
    )
    statuses = await gw.files.list(principal.app_id)
    for status in statuses:
        await _erase_bytes_and_status(gw, principal.app_id, status.file_id)
    # Bytes whose status record is gone (an upload interrupted half-way) go too.
    for name in await _object_names_of(gw, principal):
        with contextlib.suppress(ObjectNotFoundError, NotFoundError):
            await gw.objects.delete(name)
    await gw.audit.record(
        "files.erased",
        app_id=principal.app_id,
        actor=principal.key_id,
        detail={"files": str(len(statuses)), "vectors": str(deleted.vectors_deleted)},
    )
    return {"deleted": True, "files_deleted": len(statuses), "vectors_deleted": deleted.vectors_deleted}
