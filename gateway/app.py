"""The edge's ASGI application, and the uvicorn server that runs it.

:class:`EdgeApp` sends ``POST /in/{source_id}`` straight to its handler
(webhooks.py) and everything else to the Starlette application of the API,
dashboard and probes. Every request is served inside a server span
(continuing the caller's trace when it sends ``traceparent``) and counted and
timed by route template; ``GET /metrics`` serves this process's metrics
unless ``SWITCHBOARD_EDGE_METRICS`` is off, behind ``SWITCHBOARD_METRICS_TOKEN``
when one is set.
"""

from __future__ import annotations

import contextlib
import hmac
import socket
import time

import uvicorn
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.context import EdgeContext
from gateway.openapi import openapi_document
from gateway.responses import EXCEPTION_HANDLERS
from gateway.routing import starlette_routes
from gateway.transcoder import Transcoder
from gateway.webhooks import WEBHOOK_ROUTE, receive_webhook, webhook_source_id
from switchboard import metrics
from switchboard.outages import PostgresProbe
from switchboard.rpc import PortUnavailable
from switchboard.telemetry import extract_asgi_context, start_span

__all__ = ["build_edge", "EdgeApp", "EdgeServer", "EdgeTelemetry", "bind_http"]

_tracer = trace.get_tracer(__name__)


def build_edge(edge: EdgeContext) -> EdgeApp:
    document = openapi_document()

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(document)

    routes = starlette_routes(openapi)
    if edge.settings.edge.metrics or edge.settings.edge.metrics_token:
        routes.append(Route("/metrics", metrics_endpoint(edge.settings.edge.metrics_token), methods=["GET"]))
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, middleware=[Middleware(EdgeTelemetry)])
    app.state.edge = edge
    app.state.transcoder = Transcoder(edge)
    app.state.postgres = PostgresProbe(edge.database)
    return EdgeApp(app, edge)


class EdgeApp:
    """The edge: webhooks first, without a framework on the way; the rest through Starlette."""

    def __init__(self, api: Starlette, edge: EdgeContext) -> None:
        self.api = api
        self.edge = edge

    @property
    def state(self):
        return self.api.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        source_id = webhook_source_id(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if source_id is None:
            await self.api(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless an answer is sent
        with _server_span(scope) as span:
            try:
                status = await receive_webhook(self.edge, source_id, scope, receive, send)
            finally:
                metrics.record_http(WEBHOOK_ROUTE, "POST", status, time.perf_counter() - started)
                _describe(span, scope, WEBHOOK_ROUTE, status)


def _server_span(scope: Scope):
    return start_span(_tracer, f"{scope['method']} request", kind=SpanKind.SERVER,
                      parent=extract_asgi_context(scope["headers"]))


def _describe(span: trace.Span, scope: Scope, route: str, status: int) -> None:
    if span.is_recording():
        method = scope["method"]
        span.update_name(f"{method} {route}")
        span.set_attributes({"http.request.method": method, "url.path": scope["path"],
                             "http.route": route, "http.response.status_code": status})
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))


def metrics_endpoint(token: str | None):
    """``GET /metrics``: open, or only with ``Authorization: Bearer <token>`` when a token is set."""
    expected = f"Bearer {token}".encode() if token else None

    async def serve_metrics(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return Response(status_code=401, headers={"www-authenticate": 'Bearer realm="metrics"'})
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return serve_metrics


class EdgeTelemetry:
    """ASGI middleware: a server span and the HTTP metrics for every request.

    The span is current while the request is handled, so the event published
    to ``EVENTS`` carries its ``traceparent``. Metrics are labelled by the
    matched route's template (``/in/{source_id}``), never by the raw path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        status = 500  # unless a response starts

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with _server_span(scope) as span:
            try:
                await self.app(scope, receive, observed_send)
            finally:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                metrics.record_http(route, method, status, time.perf_counter() - started)
                _describe(span, scope, route, status)


def bind_http(host: str, port: int, shared: bool = False) -> socket.socket:
    """Bind the listening socket ourselves so a taken port fails loudly at start.

    ``shared``: several edge processes listen on the port (SO_REUSEPORT), and
    the kernel spreads connections among them.
    """
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets
    # only when the listener says TCP explicitly; without it every response
    # waits out a delayed ACK (~40 ms).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortUnavailable(f"ingest: cannot listen on {host}:{port} for HTTP: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class EdgeServer(uvicorn.Server):
    """uvicorn, minus its own signal handling: the service process owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield
