"""``/v1/files``: upload documents, follow their ingestion, delete them."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body
from nats.js.errors import NotFoundError, ObjectNotFoundError

from obdal_common import subjects
from obdal_common.errors import BadRequest, NotFound, PayloadTooLarge
from obdal_common.files import object_name
from obdal_common.ids import is_id, new_id
from obdal_common.messaging import request as nats_request
from obdal_common.schemas import FileStatus, IngestDelete, IngestDeleted, IngestJob, encode
from obdal_common.telemetry import inject_headers
from obdal_gateway.auth import authenticate
from obdal_gateway.state import Gateway
from obdal_gateway.uploads import detect_content_type, safe_filename

__all__ = ["delete_file", "get_file", "list_files", "upload_file"]


def _public(status: FileStatus) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(status)
    body.pop("app_id", None)
    return body


async def _owned(gw: Gateway, app_id: str, file_id: str) -> FileStatus:
    status = await gw.files.get(app_id, file_id) if is_id("file", file_id) else None
    if status is None:
        raise NotFound(f"no file {file_id}", code="file_not_found")
    return status


@post("/v1/files", status_code=202, summary="Upload a document (multipart, field 'file')")
async def upload_file(
    request: Request[Any, Any, Any],
    gw: Gateway,
    data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
) -> Response[dict[str, Any]]:
    """Store the bytes and queue ingestion: ``202 {"file_id","status":"queued"}``."""
    principal = await authenticate(request, gw, scope="files:write")
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
    content_type = detect_content_type(filename, content)
    file_id = new_id("file")
    now = datetime.now(UTC)
    status = FileStatus(
        file_id=file_id,
        app_id=principal.app_id,
        filename=filename,
        status="queued",
        size=len(content),
        content_type=content_type,
        sha256=hashlib.sha256(content).hexdigest(),
        created_at=now,
        updated_at=now,
    )
    name = object_name(principal.app_id, file_id)
    await gw.objects.put(name, content)
    await gw.files.put(status)
    job = IngestJob(
        app_id=principal.app_id,
        file_id=file_id,
        filename=filename,
        content_type=content_type,
        size=len(content),
        sha256=status.sha256,
        object_name=name,
    )
    await gw.js.publish(subjects.INGEST_JOB, encode(job), headers=inject_headers({"Nats-Msg-Id": file_id}))
    await gw.audit.record(
        "file.uploaded",
        app_id=principal.app_id,
        actor=principal.key_id,
        target=file_id,
        detail={"filename": filename},
    )
    return Response({"file_id": file_id, "status": "queued", "filename": filename}, status_code=202)


@get("/v1/files", summary="List the app's files")
async def list_files(request: Request[Any, Any, Any], gw: Gateway) -> dict[str, Any]:
    principal = await authenticate(request, gw, scope="files:read")
    return {"data": [_public(s) for s in await gw.files.list(principal.app_id)]}


@get("/v1/files/{file_id:str}", summary="A file's ingestion status")
async def get_file(request: Request[Any, Any, Any], gw: Gateway, file_id: str) -> dict[str, Any]:
    principal = await authenticate(request, gw, scope="files:read")
    return _public(await _owned(gw, principal.app_id, file_id))


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
    with contextlib.suppress(ObjectNotFoundError, NotFoundError):  # already gone is fine
        await gw.objects.delete(object_name(principal.app_id, file_id))
    await gw.files.delete(principal.app_id, file_id)
    await gw.audit.record("file.deleted", app_id=principal.app_id, actor=principal.key_id, target=file_id)
    return {"file_id": file_id, "deleted": True, "vectors_deleted": deleted.vectors_deleted}
