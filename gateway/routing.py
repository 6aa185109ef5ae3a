"""Every route of the edge: the probes, the webhook intake, the dashboard, and the ``/v1`` API.

The ``/v1`` routes are not written here: each is an RPC's ``google.api.http``
binding in the contract (``protos/switchboard/v1/*.proto``), served by the
transcoder (transcoder.py) behind one guard: the caller's key, its rate
limit and the scope the RPC's ``access`` option names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.context import EdgeContext
from gateway.contract import RouteContract, contracts
from gateway.dashboard import dashboard_routes
from gateway.guard import admit
from gateway.listen import listen_routes
from gateway.portal import portal_routes
from gateway.transcoder import Transcoder
from gateway.webhooks import WEBHOOK_ROUTE, receive_webhook
from switchboard.errors import Unavailable
from switchboard.outages import dependency_states
from switchboard.transcoding import Binding, bindings

__all__ = ["starlette_routes"]


def _guarded(binding: Binding, contract: RouteContract) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        edge: EdgeContext = request.app.state.edge
        admitted = await admit(request, binding.scope or "admin")
        transcoder: Transcoder = request.app.state.transcoder
        try:
            # A hung dependency (a stopped database answers nothing, and gRPC calls
            # have their own deadline) must not hold the caller for ever.
            async with asyncio.timeout(edge.settings.rpc_timeout_s * 3):
                response = await transcoder.answer(binding, contract, request, admitted.principal,
                                                   admitted.credential)
        except TimeoutError:
            raise Unavailable("a dependency did not answer in time; retry later") from None
        response.headers.update(admitted.verdict.headers())
        return response

    endpoint.__name__ = binding.operation_id
    return endpoint


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Readiness, with the state of each dependency.

    503 while NATS is down: no webhook can be acknowledged. With PostgreSQL
    down, webhooks for known sources are still taken (sources are cached from
    their change feed, JetStream makes them durable): 200 ``degraded``, so a
    load balancer keeps sending them here.
    """
    edge: EdgeContext = request.app.state.edge
    states = await dependency_states(edge.nc, request.app.state.postgres)
    body = {name: state.as_json() for name, state in states.items()}
    if not states["nats"].up:
        return JSONResponse({"status": "unavailable", "dependencies": body}, status_code=503,
                            headers={"Retry-After": "5"})
    return JSONResponse({"status": "ok" if all(s.up for s in states.values()) else "degraded",
                         "dependencies": body})


class _RoutedWebhook:
    """An ASGI app (a class, so that Starlette does not wrap it as a request handler)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive_webhook(scope["app"].state.edge, scope["path_params"]["source_id"], scope, receive, send)


def starlette_routes(openapi: Callable[[Request], Awaitable[Response]]) -> list[Route]:
    routes = [
        # EdgeApp answers POST /in/{source_id} before Starlette; the route stays for the 405 of other
        # methods, and for a path only Starlette's matching takes (a root_path).
        Route(WEBHOOK_ROUTE, _RoutedWebhook(), methods=["POST"], name="receive_webhook"),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        # The dashboard page and its assets: static, not API routes (no key; not in OpenAPI).
        *dashboard_routes(),
        # A stream of events, guarded as the API is (gateway/listen.py).
        *listen_routes(),
        # The consumer portal: its page, and its API behind a portal session's token (gateway/portal.py).
        *portal_routes(),
    ]
    checks = contracts(bindings())
    # Routes sharing a path share one Starlette route, so a wrong method is 405, not 404.
    by_path: dict[str, dict[str, Binding]] = {}
    for binding in bindings():
        by_path.setdefault(binding.path, {})[binding.verb] = binding
    for path, methods in by_path.items():
        handlers = {verb: _guarded(b, checks[b.grpc_path]) for verb, b in methods.items()}

        async def dispatch(request: Request, handlers=handlers) -> Response:
            return await handlers[request.method](request)

        routes.append(Route(path, dispatch, methods=list(handlers)))
    return routes
