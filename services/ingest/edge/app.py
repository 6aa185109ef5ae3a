"""The Starlette application of the edge, and the uvicorn server that runs it."""

from __future__ import annotations

import contextlib
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from services.ingest.edge.context import EdgeContext
from services.ingest.edge.openapi import openapi_document
from services.ingest.edge.responses import EXCEPTION_HANDLERS
from services.ingest.edge.routing import starlette_routes
from switchboard.rpc import PortUnavailable

__all__ = ["build_edge", "EdgeServer", "bind_http"]


def build_edge(edge: EdgeContext) -> Starlette:
    document = openapi_document()

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(document)

    app = Starlette(routes=starlette_routes(openapi), exception_handlers=EXCEPTION_HANDLERS)
    app.state.edge = edge
    return app


def bind_http(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves so a taken port fails loudly at start."""
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets
    # only when the listener says TCP explicitly; without it every response
    # waits out a delayed ACK (~40 ms).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
