"""Opaque keyset cursors: the position of the last item of a page, for the next page to start after.

Newest-first listings page by (time, id); ordered breakdowns (usage by day, model or key)
by the last group, tied to what is grouped so a cursor of one grouping cannot page another;
rankings (unanswered question groups) by (count, time, id).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from obdal_common.errors import BadRequest

__all__ = [
    "checked_cursor",
    "checked_limit",
    "decode_cursor",
    "decode_group_cursor",
    "decode_rank_cursor",
    "encode_cursor",
    "encode_group_cursor",
    "encode_rank_cursor",
]

T = TypeVar("T")

_MAX_CURSOR_CHARS = 512


class _Cursor(msgspec.Struct, frozen=True):
    t: datetime
    s: str


class _GroupCursor(msgspec.Struct, frozen=True):
    by: str
    after: str


class _RankCursor(msgspec.Struct, frozen=True):
    n: int
    t: datetime
    s: str


def _pack(cursor: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode().rstrip("=")


def _invalid() -> BadRequest:
    return BadRequest("cursor is not a next_cursor returned by this API", code="invalid_cursor")


def _unpack(value: str, typ: type[T]) -> T:
    try:
        return msgspec.json.decode(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), type=typ)
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise _invalid() from None


def encode_cursor(at: datetime, key: str) -> str:
    """The ``next_cursor`` for a page whose last item is (``at``, ``key``)."""
    return _pack(_Cursor(t=at, s=key))


def decode_cursor(value: str) -> tuple[datetime, str]:
    """(time, id) of a cursor made by :func:`encode_cursor`; 400 ``invalid_cursor`` otherwise."""
    cursor = _unpack(value, _Cursor)
    if cursor.t.tzinfo is None:
        raise _invalid()
    return cursor.t, cursor.s


def encode_group_cursor(by: str, after: str) -> str:
    """The ``next_cursor`` of a breakdown grouped ``by`` whose page ended with group ``after``."""
    return _pack(_GroupCursor(by=by, after=after))


def decode_group_cursor(value: str, by: str) -> str:
    """The last group of the previous page of a breakdown grouped ``by``; 400 ``invalid_cursor``
    for anything else (a cursor of another grouping included)."""
    cursor = _unpack(value, _GroupCursor)
    if cursor.by != by:
        raise _invalid()
    return cursor.after


def encode_rank_cursor(count: int, at: datetime, key: str) -> str:
    """The ``next_cursor`` of a ranking (by count, then time, then id, all descending) whose page
    ended with (``count``, ``at``, ``key``)."""
    return _pack(_RankCursor(n=count, t=at, s=key))


def decode_rank_cursor(value: str) -> tuple[int, datetime, str]:
    """(count, time, id) of a cursor made by :func:`encode_rank_cursor`; 400 ``invalid_cursor``
    otherwise."""
    cursor = _unpack(value, _RankCursor)
    if cursor.t.tzinfo is None:
        raise _invalid()
    return cursor.n, cursor.t, cursor.s


def checked_cursor(value: str | None) -> str | None:
    """A client's ``cursor`` before it is handed to the service that decodes it: 400 if it cannot
    be one (empty, or longer than any cursor made here)."""
    if value is not None and not (value and len(value) <= _MAX_CURSOR_CHARS):
        raise _invalid()
    return value


def checked_limit(limit: int, *, most: int) -> int:
    """A client's page ``limit``: 400 ``invalid_limit`` unless it is 1 to ``most``."""
    if not 1 <= limit <= most:
        raise BadRequest(f"limit must be between 1 and {most}", code="invalid_limit")
    return limit
