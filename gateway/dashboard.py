"""The operators' dashboard: one static page, its script and its style sheet.

The page is not guarded by an API key: it holds no data. Its script asks for
a key in a sign-in form, keeps it in ``sessionStorage`` and reads the ``/v1``
API with it (``Authorization: Bearer``), so every number it shows is what
that key may read. The three files are package data under ``static/``, read
once at start-up, and served with strict headers: a Content-Security-Policy
that allows only this origin's script and style (no inline script, no
framing, no form submission), ``nosniff``, no referrer. See docs/dashboard.md.
"""

from __future__ import annotations

from importlib.resources import files
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["DASHBOARD_HEADERS", "dashboard_routes"]

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    # The sign-in form is handled by the script; a real submission (the key in a URL) is refused.
    "form-action 'none'",
    "frame-ancestors 'none'",
))

DASHBOARD_HEADERS: dict[str, str] = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-cache",
}

# URL path → (file under static/, media type).
_ASSETS: dict[str, tuple[str, str]] = {
    "/dashboard": ("dashboard.html", "text/html; charset=utf-8"),
    "/dashboard/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}


def _asset(name: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    body = files("gateway").joinpath("static", name).read_bytes()

    async def serve(request: Request) -> Response:
        return Response(body, headers=DASHBOARD_HEADERS, media_type=media_type)

    serve.__name__ = f"dashboard_{name.replace('.', '_')}"
    return serve


def dashboard_routes() -> list[Route]:
    """``GET /dashboard`` and its two assets (not API routes: no key, not in the OpenAPI document)."""
    return [Route(path, _asset(name, media_type), methods=["GET"]) for path, (name, media_type) in _ASSETS.items()]
