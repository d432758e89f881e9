"""The one exception hierarchy shared by every Obdal service.

Each error carries a stable machine-readable ``code``, a human message and the
HTTP status the gateway answers with. Lower libraries' errors are mapped to
these at the boundary where they are raised, so callers only ever see these.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BadGateway",
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "DependencyUnavailable",
    "Forbidden",
    "GatewayTimeout",
    "MethodNotAllowed",
    "NotFound",
    "ObdalError",
    "PayloadTooLarge",
    "RateLimited",
    "Unauthorized",
    "UnprocessableContent",
    "UnsupportedMediaType",
    "error_class",
    "error_for_code",
]


class ObdalError(Exception):
    """Base of every error Obdal raises on purpose."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code

    def to_dict(self) -> dict[str, str]:
        """The public JSON body of this error (``{"code","message"}``)."""
        return {"code": self.code, "message": self.message}


class ConfigurationError(ObdalError):
    """Settings are missing or invalid; raised at start-up."""

    default_code = "configuration_error"


class BadRequest(ObdalError):
    status = 400
    default_code = "bad_request"


class Unauthorized(ObdalError):
    status = 401
    default_code = "unauthorized"


class Forbidden(ObdalError):
    status = 403
    default_code = "forbidden"


class NotFound(ObdalError):
    status = 404
    default_code = "not_found"


class MethodNotAllowed(ObdalError):
    status = 405
    default_code = "method_not_allowed"


class Conflict(ObdalError):
    status = 409
    default_code = "conflict"


class PayloadTooLarge(ObdalError):
    status = 413
    default_code = "payload_too_large"


class UnsupportedMediaType(ObdalError):
    status = 415
    default_code = "unsupported_media_type"


class UnprocessableContent(ObdalError):
    """Well-formed input that cannot be processed (e.g. an uploaded file whose ingestion failed)."""

    status = 422
    default_code = "unprocessable_content"


class RateLimited(ObdalError):
    status = 429
    default_code = "rate_limited"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class DependencyUnavailable(ObdalError):
    """A dependency (worker, NATS, Redis, MongoDB, the index) cannot serve now."""

    status = 503
    default_code = "service_unavailable"


class BadGateway(ObdalError):
    """A worker answered wrongly or ended its answer before finishing it."""

    status = 502
    default_code = "bad_gateway"


class GatewayTimeout(ObdalError):
    """A worker took a request and then went silent."""

    status = 504
    default_code = "gateway_timeout"


_BY_STATUS: dict[int, type[ObdalError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        UnprocessableContent,
        RateLimited,
        ObdalError,
        BadGateway,
        DependencyUnavailable,
        GatewayTimeout,
    )
}


def error_class(status: int) -> type[ObdalError]:
    """The class of an HTTP status; a status without one of its own falls back to its family's
    (4xx: :class:`BadRequest`, else :class:`ObdalError`), so a client's error never becomes a 500."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return BadRequest if 400 <= status < 500 else ObdalError


def error_for_code(status: int, code: str | None, message: str, *, retry_after: int = 1) -> ObdalError:
    """Rebuild an error received over NATS (status, code, message) as an exception;
    ``code`` ``None`` is the class's default; ``retry_after`` is a 429's."""
    cls = error_class(status)
    if issubclass(cls, RateLimited):
        return cls(message, code=code, retry_after=retry_after)
    return cls(message, code=code)
