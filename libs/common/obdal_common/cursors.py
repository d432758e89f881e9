"""Opaque keyset cursors for newest-first paging: the (time, id) of the last item of a page."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

import msgspec

from obdal_common.errors import BadRequest

__all__ = ["decode_cursor", "encode_cursor"]


class _Cursor(msgspec.Struct, frozen=True):
    t: datetime
    s: str


def encode_cursor(at: datetime, key: str) -> str:
    """The ``next_cursor`` for a page whose last item is (``at``, ``key``)."""
    return base64.urlsafe_b64encode(msgspec.json.encode(_Cursor(t=at, s=key))).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[datetime, str]:
    """(time, id) of a cursor made by :func:`encode_cursor`; 400 ``invalid_cursor`` otherwise."""
    try:
        cursor = msgspec.json.decode(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise BadRequest("cursor is not a next_cursor returned by this API", code="invalid_cursor") from None
    if cursor.t.tzinfo is None:
        raise BadRequest("cursor is not a next_cursor returned by this API", code="invalid_cursor")
    return cursor.t, cursor.s
