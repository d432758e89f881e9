"""Upload checks: a safe display name and the content type decided from the bytes."""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from pathlib import PurePosixPath, PureWindowsPath

from obdal_common.errors import UnsupportedMediaType
from obdal_common.formats import DOCX, HTML, PDF, SUPPORTED, TEXT_SUFFIXES

__all__ = ["detect_content_type", "safe_filename"]

_UNSAFE = re.compile(r"[^\w.\- ()]+", re.UNICODE)
_HTML_START = re.compile(
    rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)[\s>]", re.IGNORECASE | re.DOTALL
)
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


def _zip_type(content: bytes) -> str:
    """DOCX if the archive is a Word document; only the central directory is read, nothing inflated."""
    try:
        names = set(zipfile.ZipFile(io.BytesIO(content)).namelist())
    except (zipfile.BadZipFile, ValueError):
        raise UnsupportedMediaType(
            "the file looks like a ZIP archive but cannot be opened", code="corrupt_file"
        ) from None
    if "word/document.xml" in names:
        return DOCX
    raise UnsupportedMediaType(
        f"ZIP archives and Office formats other than .docx are not supported; upload {SUPPORTED}",
        code="unsupported_file_type",
    )


def detect_content_type(filename: str, content: bytes) -> str:
    """The parser to use, from the bytes first and the extension second; 415 otherwise."""
    suffix = PurePosixPath(filename.lower()).suffix
    if content.startswith(b"%PDF-"):
        return PDF
    if content.startswith(b"PK\x03\x04"):
        return _zip_type(content)
    if not _is_text(content):
        raise UnsupportedMediaType(
            f"unsupported file type (binary content): upload {SUPPORTED}", code="unsupported_file_type"
        )
    if _HTML_START.match(content[:4096]):
        return HTML  # whatever the extension says
    if suffix not in TEXT_SUFFIXES:
        raise UnsupportedMediaType(
            f"unsupported file type {suffix}: upload {SUPPORTED}", code="unsupported_file_type"
        )
    return TEXT_SUFFIXES[suffix]
