"""The platform's one exception hierarchy, and its HTTP mapping (no gRPC here).

Domain code raises these; the HTTP edge maps them to statuses with
``HTTP_STATUS``, and a REST error answer is turned back into the same exception
by :func:`from_rest_error`. The gRPC side (status codes, the exception a gRPC
status stands for) is in :mod:`switchboard.rpc`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SwitchboardError",
    "InvalidRequest",
    "Unauthenticated",
    "PermissionDenied",
    "NotFound",
    "Conflict",
    "Gone",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "RateLimited",
    "Unavailable",
    "HTTP_STATUS",
    "BY_CODE",
    "from_rest_error",
]


class SwitchboardError(Exception):
    """Base of every error the platform reports to a caller.

    ``code`` is a stable machine-readable string; the message is for humans and
    must never carry a secret.
    """

    code = "internal"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        # The request field at fault, when there is one (``url``, ``config.channel``).
        self.field = field


class InvalidRequest(SwitchboardError):
    """The request is malformed or violates a rule (400)."""

    code = "invalid_request"


class Unauthenticated(SwitchboardError):
    """Missing, malformed, unknown, revoked or expired credentials (401)."""

    code = "unauthenticated"


class PermissionDenied(SwitchboardError):
    """Authenticated, but not allowed to do this (403)."""

    code = "permission_denied"


class NotFound(SwitchboardError):
    """No such resource for this tenant (404); also for other tenants' resources."""

    code = "not_found"


class Gone(SwitchboardError):
    """The resource existed and has been turned off for good (410)."""

    code = "gone"


class Conflict(SwitchboardError):
    """The resource already exists or is in a conflicting state (409)."""

    code = "conflict"


class UnsupportedMediaType(SwitchboardError):
    """The request's content type is not one this endpoint reads (415)."""

    code = "unsupported_media_type"


class PayloadTooLarge(SwitchboardError):
    """The request body is over the configured limit (413)."""

    code = "payload_too_large"


class RateLimited(SwitchboardError):
    """Over a rate limit (429); ``retry_after_s`` says when to try again."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.headers = headers or {}


class Unavailable(SwitchboardError):
    """A dependency (NATS, PostgreSQL, another service) is down (503).

    The caller may retry; nothing was accepted.
    """

    code = "unavailable"


HTTP_STATUS: dict[type[SwitchboardError], int] = {
    InvalidRequest: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    RateLimited: 429,
    Unavailable: 503,
    SwitchboardError: 500,
}


def http_status(error: SwitchboardError) -> int:
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


# A stable code names its class wherever a class has one of its own (429 and 413 share a gRPC code).
BY_CODE: dict[str, type[SwitchboardError]] = {cls.code: cls for cls in HTTP_STATUS if cls is not SwitchboardError}


_FROM_HTTP = {status: cls for cls, status in HTTP_STATUS.items() if cls is not SwitchboardError}


def from_rest_error(status: int, body: Any, retry_after_s: float | None = None,
                    headers: dict[str, str] | None = None) -> SwitchboardError:
    """The platform error a REST error answer stands for: ``{"error": {"code", "message", "field"}}`` rebuilt
    with its stable code, as :func:`switchboard.rpc.from_grpc_code` does for a gRPC status."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code, message = str(error.get("code") or ""), str(error.get("message") or f"HTTP {status}")
    cls = BY_CODE.get(code) or _FROM_HTTP.get(status) or (Unavailable if status >= 500 else SwitchboardError)
    if cls is RateLimited:
        return RateLimited(message, retry_after_s=retry_after_s or 1.0, headers=headers)
    return cls(message, code=code or None, field=error.get("field"))
