"""Identifiers: short, prefixed, URL-safe, random."""

from __future__ import annotations

import secrets
import string

__all__ = ["is_id", "new_id", "new_secret"]

_ALPHABET = string.ascii_letters + string.digits


def new_secret(length: int = 32) -> str:
    """A random base62 string (``length`` characters, ~5.95 bits each)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 16) -> str:
    """A prefixed random id, e.g. ``sess_9Rna21...``."""
    return f"{prefix}_{new_secret(length)}"


def is_id(prefix: str, value: str) -> bool:
    """Whether ``value`` has the shape of an id made by :func:`new_id` with ``prefix``."""
    head, sep, tail = value.partition("_")
    return head == prefix and bool(sep) and 1 <= len(tail) <= 64 and tail.isascii() and tail.isalnum()
