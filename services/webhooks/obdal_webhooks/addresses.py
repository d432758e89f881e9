"""E-mail addresses and header text made safe: what a customer typed never becomes a header of its own.

Every string that goes into a header passes :func:`header_text` (no CR, LF or other control
character is left, so no line break can start a ``Bcc:``), and every address :func:`clean_address`
(one plain ``local@domain``, ASCII, nothing around it). The message itself is an
``email.message.EmailMessage``, whose policy quotes display names and encodes what is not ASCII.
"""

from __future__ import annotations

import re
import unicodedata
from email.headerregistry import Address
from email.policy import default as _policy

__all__ = ["clean_address", "header_text", "mailbox", "parse_mailbox"]

# One address as people type it: no spaces, quotes, brackets, commas or a second "@" (RFC 5321's
# quoted local parts and address literals are refused: no one types them into a support form).
_ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
)
_MAX_ADDRESS = 254


def header_text(value: object, limit: int) -> str:
    """``value`` as one line of at most ``limit`` characters: every control character (CR, LF,
    tab, NUL, Unicode line and paragraph separators) becomes a space, runs of spaces one."""
    text = value if isinstance(value, str) else ""
    kept = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in text)
    line = " ".join(kept.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def clean_address(value: object) -> str | None:
    """``value`` if it is exactly one plain address (``local@domain.tld``), else ``None``."""
    if not isinstance(value, str):
        return None
    address = value.strip()
    if len(address) > _MAX_ADDRESS or not _ADDRESS.fullmatch(address):
        return None
    local, _, domain = address.partition("@")
    if "." not in domain or ".." in address or local.startswith(".") or local.endswith("."):
        return None
    return address


def parse_mailbox(value: str) -> tuple[str, str]:
    """``'Name <local@domain>'`` or ``local@domain`` as (display name, address); ``ValueError`` if
    it is not one such mailbox."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError("must be on one line")
    problem = f"{value!r} is not one e-mail address, e.g. 'Obdal <bot@example.com>'"
    parsed = _policy.header_factory("From", value)
    if parsed.defects or len(parsed.addresses) != 1:
        raise ValueError(problem)
    (found,) = parsed.addresses
    cleaned = clean_address(found.addr_spec)
    if cleaned is None:
        raise ValueError(problem)
    return header_text(found.display_name, 100), cleaned


def mailbox(name: str, address: str) -> Address:
    """A header's mailbox, its display name made one safe line (the policy quotes it)."""
    local, _, domain = address.partition("@")
    return Address(display_name=header_text(name, 100), username=local, domain=domain)
