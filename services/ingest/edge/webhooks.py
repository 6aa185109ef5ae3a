"""``POST /in/{source_id}``: where third-party services send webhooks."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse

from plugins.sources.spec import InboundRequest
from services.ingest.edge.context import EdgeContext
from services.ingest.edge.requests import read_body

__all__ = ["receive_webhook"]


async def receive_webhook(request: Request) -> JSONResponse:
    """202 with the event id once JetStream has stored it; 401/400/404/413/503 otherwise."""
    edge: EdgeContext = request.app.state.edge
    received_at = time.time()
    body = await read_body(request, edge.settings.max_body_bytes)
    inbound = InboundRequest(
        method=request.method,
        path=request.url.path,
        headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]},
        body=body,
        query=dict(request.query_params),
        received_at=received_at,
    )
    accepted = await edge.intake.accept(request.path_params["source_id"], inbound)
    return JSONResponse({"event_id": accepted.event_id, "duplicate": accepted.duplicate}, status_code=202)
