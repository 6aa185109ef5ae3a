"""Every error the edge returns is ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import logging
import math
from typing import Any
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from switchboard.errors import RateLimited, SwitchboardError, http_status
from switchboard.outages import platform_error

__all__ = ["error_body", "error_parts", "error_response", "unexpected_error", "EXCEPTION_HANDLERS"]

logger = logging.getLogger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "invalid_request"}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """``{"error": {"code", "message"}}``, with ``field`` when the error names the request field at fault."""
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def error_parts(exc: SwitchboardError) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """Status, JSON body and headers for a platform error: the one place they are decided."""
    status = http_status(exc)
    if status >= 500 and status != 503:
        logger.error("internal error", extra={"error": exc.message})
    headers: dict[str, str] | None = None
    if isinstance(exc, RateLimited):
        headers = {**exc.headers, "Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    elif status == 503:
        # 503 always means "not acknowledged; try again shortly".
        headers = {"Retry-After": "5"}
    return status, error_body(exc.code, exc.message, exc.field), headers


async def _switchboard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SwitchboardError)
    status, body, headers = error_parts(exc)
    return JSONResponse(body, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail),
                          exc.headers)


def unexpected_error(exc: Exception, path: str) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """Status, JSON body and headers for an exception that is not a platform error."""
    dependency_down = platform_error(exc)
    if dependency_down is not None:
        # NATS or PostgreSQL failing under a handler: a 503 to retry, never a 500.
        return error_parts(dependency_down)
    logger.error("unhandled error", exc_info=exc, extra={"path": path})
    return 500, error_body("internal", "internal error"), None


async def _unexpected(request: Request, exc: Exception) -> Response:
    status, body, headers = unexpected_error(exc, request.url.path)
    return JSONResponse(body, status_code=status, headers=headers)


EXCEPTION_HANDLERS = {
    SwitchboardError: _switchboard_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
