"""Web origins: parsing, validating an allowed-origins list, and matching against it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from obdal_common.errors import BadRequest

__all__ = ["InvalidOrigin", "origin_allowed", "validate_allowed_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class InvalidOrigin(BadRequest):
    """Not a ``scheme://host[:port]`` origin."""

    default_code = "invalid_origin"


def _split(origin: str, *, allow_wildcard: bool) -> tuple[str, str, int]:
    if origin != origin.strip() or not origin:
        raise InvalidOrigin(f"malformed origin {origin!r}")
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        raise InvalidOrigin(f"malformed origin {origin!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidOrigin(f"origin {origin!r} must be http or https")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidOrigin(f"origin {origin!r} must be scheme://host[:port] only")
    host = (parts.hostname or "").lower()
    labels = host.split(".")
    if host.startswith("[") or ":" in host:
        pass  # IPv6 literal, accepted as is
    else:
        check = labels[1:] if allow_wildcard and labels[0] == "*" else labels
        if not check or not all(_LABEL.match(label) for label in check):
            raise InvalidOrigin(f"origin {origin!r} has an invalid host")
        if allow_wildcard and labels[0] == "*" and len(check) < 2:
            raise InvalidOrigin(f"wildcard origin {origin!r} must cover a registrable domain")
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def validate_allowed_origin(origin: str) -> str:
    """Check an entry of a key's allowed origins (``https://*.example.com`` allowed); canonical form."""
    scheme, host, port = _split(origin.rstrip("/"), allow_wildcard=True)
    return f"{scheme}://{host}:{port}"


def origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """Whether a request ``Origin`` matches one of ``allowed`` (canonical entries).

    Exact scheme, host and port; ``*.example.com`` matches subdomains of
    example.com at any depth, never example.com itself nor look-alikes.
    """
    try:
        scheme, host, port = _split(origin, allow_wildcard=False)
    except InvalidOrigin:
        return False
    for entry in allowed:
        e_scheme, e_host, e_port = _split(entry, allow_wildcard=True)
        if e_scheme != scheme or e_port != port:
            continue
        if e_host.startswith("*."):
            if host.endswith(e_host[1:]) and len(host) > len(e_host) - 1:
                return True
        elif e_host == host:
            return True
    return False
