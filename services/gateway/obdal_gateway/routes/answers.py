"""``/v1/answers``: the app's curated answers, written by its people for the questions it gets.

Ingest owns and checks them (:class:`~obdal_common.contract.Ingest`, docs/support.md);
this route only shapes the HTTP side. They are the app's knowledge, like its documents, so
they take the same scopes as ``/v1/files``: ``files:read`` to read, ``files:write`` to change.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import delete, get, patch, post
from litestar.openapi import ResponseSpec

from obdal_common.cursors import checked_cursor, checked_limit
from obdal_common.schemas import (
    CuratedAnswer,
    CuratedAnswerCreate,
    CuratedAnswerLookup,
    CuratedAnswerQuery,
    CuratedAnswerUpdate,
)
from obdal_gateway.auth import Principal
from obdal_gateway.state import Gateway

__all__ = [
    "AnswerBody",
    "AnswerChanges",
    "create_answer",
    "delete_answer",
    "get_answer",
    "list_answers",
    "public_answer",
    "update_answer",
]

_MAX_LIMIT = 100
# 20 questions of 500 characters and an 8,000-character answer, even if every character is
# JSON-escaped (\uXXXX\uXXXX): the limits themselves are ingest's 413.
_BODY_MAX_BYTES = 256 * 1024
_NOT_FOUND = ResponseSpec(
    data_container=dict[str, Any],
    description="`answer_not_found`: no curated answer of the app has this id",
)
_INVALID = ResponseSpec(
    data_container=dict[str, Any],
    description="`invalid_curated_answer`: no question, an empty question or an empty answer",
)
_TOO_LARGE = ResponseSpec(
    data_container=dict[str, Any],
    description="`curated_answer_too_large`: over 20 questions, a question over 500 characters or "
    "an answer over 8,000",
)
_NO_FILE = ResponseSpec(
    data_container=dict[str, Any],
    description="`file_not_found`: `source_file_id` is not a file of the app (or `answer_not_found`)",
)


class AnswerBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A curated answer: the questions it answers (phrasings of one question) and its text."""

    questions: list[str]
    answer: str
    source_file_id: str | None = None


class AnswerChanges(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The fields to change; those left out are kept, and ``source_file_id: null`` clears it."""

    questions: list[str] | msgspec.UnsetType = msgspec.UNSET
    answer: str | msgspec.UnsetType = msgspec.UNSET
    source_file_id: str | msgspec.UnsetType | None = msgspec.UNSET


def public_answer(answer: CuratedAnswer) -> dict[str, Any]:
    return {
        "answer_id": answer.answer_id,
        "questions": answer.questions,
        "answer": answer.answer,
        "source_file_id": answer.source_file_id,
        "created_at": msgspec.to_builtins(answer.created_at),
        "updated_at": msgspec.to_builtins(answer.updated_at),
    }


@post(
    "/v1/answers",
    status_code=201,
    summary="Add a curated answer: chat answers questions close to its questions with it",
    opt={"scope": "files:write"},
    request_max_body_size=_BODY_MAX_BYTES,
    responses={
        404: ResponseSpec(
            data_container=dict[str, Any],
            description="`file_not_found`: `source_file_id` is not a file of the app",
        ),
        409: ResponseSpec(
            data_container=dict[str, Any],
            description="`too_many_curated_answers`: the app has as many as it may keep",
        ),
        413: _TOO_LARGE,
        422: _INVALID,
    },
)
async def create_answer(principal: Principal, gw: Gateway, data: AnswerBody) -> dict[str, Any]:
    """``questions``: at least one (duplicates, case and spacing aside, are dropped); ``answer``:
    the text a question close enough to one of them is answered with, as written;
    ``source_file_id``: a file of the app it comes from, cited with it."""
    created = await gw.ingest.answer_create(
        CuratedAnswerCreate(
            app_id=principal.app_id,
            questions=data.questions,
            answer=data.answer,
            source_file_id=data.source_file_id,
        )
    )
    await gw.audit.record(
        "answer.created", app_id=principal.app_id, actor=principal.key_id, target=created.answer_id
    )
    return public_answer(created)


@get(
    "/v1/answers",
    summary="The app's curated answers, most recently updated first (cursor pagination)",
    opt={"scope": "files:read"},
)
async def list_answers(
    principal: Principal, gw: Gateway, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    """Pass ``next_cursor`` back as ``cursor`` for the next page."""
    checked_limit(limit, most=_MAX_LIMIT)
    page = await gw.ingest.answer_list(
        CuratedAnswerQuery(app_id=principal.app_id, limit=limit, cursor=checked_cursor(cursor))
    )
    return {"answers": [public_answer(a) for a in page.answers], "next_cursor": page.next_cursor}


@get(
    "/v1/answers/{answer_id:str}",
    summary="One curated answer",
    opt={"scope": "files:read"},
    responses={404: _NOT_FOUND},
)
async def get_answer(principal: Principal, gw: Gateway, answer_id: str) -> dict[str, Any]:
    found = await gw.ingest.answer_get(CuratedAnswerLookup(app_id=principal.app_id, answer_id=answer_id))
    return public_answer(found)


@patch(
    "/v1/answers/{answer_id:str}",
    summary="Change a curated answer (the fields given)",
    opt={"scope": "files:write"},
    request_max_body_size=_BODY_MAX_BYTES,
    responses={404: _NO_FILE, 413: _TOO_LARGE, 422: _INVALID},
)
async def update_answer(
    principal: Principal, gw: Gateway, answer_id: str, data: AnswerChanges
) -> dict[str, Any]:
    """New ``questions`` replace the old ones (and are embedded again)."""
    updated = await gw.ingest.answer_update(
        CuratedAnswerUpdate(
            app_id=principal.app_id,
            answer_id=answer_id,
            questions=data.questions,
            answer=data.answer,
            source_file_id=data.source_file_id,
        )
    )
    await gw.audit.record("answer.updated", app_id=principal.app_id, actor=principal.key_id, target=answer_id)
    return public_answer(updated)


@delete(
    "/v1/answers/{answer_id:str}",
    status_code=200,
    summary="Delete a curated answer",
    description="Chat workers stop giving it within moments (they follow the change).",
    opt={"scope": "files:write"},
    responses={404: _NOT_FOUND},
)
async def delete_answer(principal: Principal, gw: Gateway, answer_id: str) -> dict[str, Any]:
    deleted = await gw.ingest.answer_delete(CuratedAnswerLookup(app_id=principal.app_id, answer_id=answer_id))
    await gw.audit.record("answer.deleted", app_id=principal.app_id, actor=principal.key_id, target=answer_id)
    return {"answer_id": deleted.answer_id, "deleted": True}
