"""Web origins: parsing, validating an allowed-origins list, and matching against it.

Allowed origins are validated and canonicalised once, when a key is written, to
``scheme://host:port``: lower case, default port explicit, an IPv6 literal in
brackets in its compressed form (``http://[::1]:8080``). The canonical form always
parses back to itself (``validate_allowed_origin(c) == c``, checked on every write),
so what is stored can be read again.

A wildcard (``https://*.example.com``) must cover a registrable domain: the domain
after ``*.`` may not be a public suffix (``co.uk``, ``github.io``, ``vercel.app``),
per the Public Suffix List bundled in the ``publicsuffixlist`` package (read from
the installed package, never fetched at run time).

Matching never raises on a stored entry: one that does not parse (a record written
before these rules) is skipped and logged once, so it cannot fail another key's
check or turn a CORS preflight into a 500.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
from collections.abc import Iterable

from publicsuffixlist import PublicSuffixList

from obdal_common.errors import BadRequest

__all__ = ["InvalidOrigin", "origin_allowed", "validate_allowed_origin"]

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([/?#].*)?", re.DOTALL)
_PORT = re.compile(r"[0-9]{1,5}")
_ENTRY_CACHE = 4096


class InvalidOrigin(BadRequest):
    """Not a ``scheme://host[:port]`` origin (or a wildcard over a public suffix)."""

    default_code = "invalid_origin"


@functools.cache
def _psl() -> PublicSuffixList:
    # The list shipped inside the package (public_suffix_list.dat): no network.
    return PublicSuffixList()


def _host(raw: str, origin: str, *, allow_wildcard: bool) -> str:
    """The canonical host: lower-case name, dotted-quad IPv4, or ``[ipv6]``."""
    if raw.startswith("["):
        if not raw.endswith("]") or "%" in raw:
            raise InvalidOrigin(f"origin {origin!r} has an invalid IPv6 literal")
        try:
            return f"[{ipaddress.IPv6Address(raw[1:-1]).compressed}]"
        except ValueError:
            raise InvalidOrigin(f"origin {origin!r} has an invalid IPv6 literal") from None
    host = raw.lower()
    labels = host.split(".")
    wildcard = allow_wildcard and labels[0] == "*"
    check = labels[1:] if wildcard else labels
    if not check or not all(_LABEL.match(label) for label in check):
        raise InvalidOrigin(f"origin {origin!r} has an invalid host")
    if check[-1].isdigit():  # browsers read a name ending in a number as IPv4
        if wildcard:
            raise InvalidOrigin(f"wildcard origin {origin!r} must cover a domain name, not an address")
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise InvalidOrigin(f"origin {origin!r} has an invalid IPv4 address") from None
    if wildcard:
        base = ".".join(check)
        if _psl().privatesuffix(base) is None:
            raise InvalidOrigin(
                f"wildcard origin {origin!r} covers the public suffix {base!r}, under which anyone can"
                f" register a site; name a registrable domain instead, e.g. *.example.{base}"
            )
    return host


def _split(origin: str, *, allow_wildcard: bool) -> tuple[str, str, int]:
    if not origin or origin != origin.strip():
        raise InvalidOrigin(f"malformed origin {origin!r}")
    match = _SCHEME.fullmatch(origin)
    if match is None:
        raise InvalidOrigin(f"malformed origin {origin!r}")
    scheme, authority, rest = match[1].lower(), match[2], match[3]
    if scheme not in _DEFAULT_PORTS:
        raise InvalidOrigin(f"origin {origin!r} must be http or https")
    if rest not in (None, "/") or "@" in authority:
        raise InvalidOrigin(f"origin {origin!r} must be scheme://host[:port] only")
    if authority.startswith("["):
        close = authority.find("]") + 1
        raw, port_text = authority[:close], authority[close:]
        if not close or (port_text and not port_text.startswith(":")):
            raise InvalidOrigin(f"origin {origin!r} has an invalid IPv6 literal")
        port_text = port_text[1:]
    else:
        raw, _, port_text = authority.partition(":")
        if authority.count(":") > 1:
            raise InvalidOrigin(f"origin {origin!r}: an IPv6 literal must be in brackets, http://[::1]:8080")
    host = _host(raw, origin, allow_wildcard=allow_wildcard)
    if port_text == "":
        port = _DEFAULT_PORTS[scheme]
    elif _PORT.fullmatch(port_text) and 0 < int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise InvalidOrigin(f"origin {origin!r} has an invalid port")
    return scheme, host, port


def _canonical(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{host}:{port}"


def validate_allowed_origin(origin: str) -> str:
    """Check an entry of a key's allowed origins (``https://*.example.com`` allowed); canonical form."""
    canonical = _canonical(*_split(origin.rstrip("/"), allow_wildcard=True))
    # What is stored must read back as itself, or matching could not use it.
    if _canonical(*_split(canonical, allow_wildcard=True)) != canonical:
        raise InvalidOrigin(f"origin {origin!r} has no stable canonical form")
    return canonical


@functools.lru_cache(maxsize=_ENTRY_CACHE)
def _entry(entry: str) -> tuple[str, str, int] | None:
    """A stored entry, parsed; ``None`` (logged once while cached) when it cannot be."""
    try:
        return _split(entry, allow_wildcard=True)
    except Exception as exc:  # a stored value must never fail someone else's check
        log.warning("skipping an unusable stored allowed origin %r: %s", entry, exc)
        return None


def origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """Whether a request ``Origin`` matches one of ``allowed`` (canonical entries).

    Exact scheme, host and port; ``*.example.com`` matches subdomains of
    example.com at any depth, never example.com itself nor look-alikes. Never
    raises: an unparsable request origin matches nothing, an unparsable stored
    entry is skipped.
    """
    try:
        scheme, host, port = _split(origin, allow_wildcard=False)
    except InvalidOrigin:
        return False
    for entry in allowed:
        parsed = _entry(entry)
        if parsed is None:
            continue
        e_scheme, e_host, e_port = parsed
        if e_scheme != scheme or e_port != port:
            continue
        if e_host.startswith("*."):
            if host.endswith(e_host[1:]) and len(host) > len(e_host) - 1:
                return True
        elif e_host == host:
            return True
    return False
