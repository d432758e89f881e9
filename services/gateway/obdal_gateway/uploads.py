"""Upload checks: a safe display name and the content type decided from the bytes."""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath, PureWindowsPath

from obdal_common.errors import UnsupportedMediaType

__all__ = ["detect_content_type", "safe_filename"]

_UNSAFE = re.compile(r"[^\w.\- ()]+", re.UNICODE)
_TEXT_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".txt": "text/plain", "": "text/plain"}
_MAX_NAME = 200


def safe_filename(name: str | None) -> str:
    """A display name with no path, control or odd characters. It never becomes a path."""
    base = PureWindowsPath(PurePosixPath(name or "").name).name
    base = unicodedata.normalize("NFC", base)
    base = _UNSAFE.sub("_", base).strip(" .")
    return base[:_MAX_NAME] or "document.txt"


def _is_text(content: bytes) -> bool:
    head = content[:65536]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the sample's end is still text.
        return exc.start >= len(head) - 3
    return True


def detect_content_type(filename: str, content: bytes) -> str:
    """The parser to use, from the bytes first and the extension second; 415 otherwise."""
    suffix = PurePosixPath(filename.lower()).suffix
    if content.startswith(b"%PDF") or content.startswith(b"PK\x03\x04"):
        raise UnsupportedMediaType(
            "PDF and Office documents are not supported yet; upload .txt or .md", code="unsupported_file_type"
        )
    if suffix not in _TEXT_TYPES or not _is_text(content):
        raise UnsupportedMediaType(
            f"unsupported file type{f' {suffix}' if suffix else ''}: upload UTF-8 .txt or .md files",
            code="unsupported_file_type",
        )
    return _TEXT_TYPES[suffix]
