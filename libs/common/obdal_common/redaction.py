"""Keep secrets and personal data out of spans, logs and metrics.

A request URL may carry a key (``GET /v1/sessions?api_key=...``, as documented for
browsers) and personal data (``?user=...``). OpenTelemetry's ASGI middleware records the
URL as ``http.url`` / ``url.full`` (with the query) and the query as ``url.query``; it only
redacts a few cloud-signature parameters. Everything we export goes through here:

* URL attributes lose their query string, and query attributes are dropped;
* any other string (attribute, event, resource value, log line) has Obdal keys, bearer
  tokens, URL passwords and the values of key-like or personal query parameters replaced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "METRIC_ATTRIBUTE_ALLOWLIST",
    "redact_attributes",
    "redact_text",
    "redact_value",
]

REDACTED = "[REDACTED]"

# Attributes holding a whole URL or a request target: their query string goes.
_URL_ATTRIBUTES = frozenset(
    {"http.url", "url.full", "http.target", "url.original", "http.request.header.referer"}
)
# Attributes holding only a query string: dropped.
_QUERY_ATTRIBUTES = frozenset({"url.query", "http.query", "http.query_string"})

# An Obdal key: ``obd_sk_<16-char id>_<32-char secret>`` (the id is public, the rest is not).
_OBDAL_KEY = re.compile(r"\b(obd_(?:sk|pk)_[A-Za-z0-9]{16})_[A-Za-z0-9]{32}\b")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")
# ``name=value`` of a query (or form) parameter whose name says secret or person.
_SENSITIVE_PARAM = re.compile(
    r"(?i)((?:^|[?&;\s])[\w.-]*(?:key|token|secret|password|passwd|auth|sig|signature|"
    r"user|email|phone|credential)[\w.-]*=)[^&#\s\"']*"
)
# The password (or token) in a URL's user information: ``nats://obdal:<password>@host``,
# ``redis://:<password>@host``, ``nats://<token>@host``. The servers' URLs carry them.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://(?:[^\s/?#@:\"']*:)?)[^\s/?#@\"']+@")
# A URL or an absolute path followed by a query string, anywhere in a string.
_URL_QUERY = re.compile(r"((?:[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/?#\"']*)?/[^\s?#\"']*)\?[^\s#\"']*")

# The labels the ASGI middleware's own metrics (``http.server.*``) may keep: never a URL, a
# target, a query or any other value a client chooses, such as the Host header (``http.host``,
# ``http.server_name``): each new value is a new series (see obdal_common.metrics).
METRIC_ATTRIBUTE_ALLOWLIST = frozenset(
    {
        "http.method",
        "http.request.method",
        "http.status_code",
        "http.response.status_code",
        "http.route",
        "http.scheme",
        "url.scheme",
        "http.flavor",
        "network.protocol.version",
        "net.host.port",
        "error.type",
    }
)


def strip_query(url: str) -> str:
    """``url`` without its query string (and fragment)."""
    return url.split("?", 1)[0].split("#", 1)[0]


def redact_text(text: str) -> str:
    """``text`` with keys, bearer tokens, URL passwords and query strings and sensitive parameters
    replaced."""
    text = _OBDAL_KEY.sub(rf"\1_{REDACTED}", text)
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    text = _URL_QUERY.sub(rf"\1?{REDACTED}", text)
    return _SENSITIVE_PARAM.sub(rf"\1{REDACTED}", text)


def redact_value(value: Any) -> Any:
    """An attribute value with every string in it passed through :func:`redact_text`."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, tuple | list):
        return type(value)(redact_value(item) for item in value)
    return value


def redact_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of span/event/resource ``attributes`` safe to export."""
    safe: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if key in _QUERY_ATTRIBUTES or key.endswith(".query"):
            continue
        if key in _URL_ATTRIBUTES and isinstance(value, str):
            value = strip_query(value)
        safe[key] = redact_value(value)
    return safe
