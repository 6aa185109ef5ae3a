"""A loopback receiver for the end-to-end benchmark: records each delivery's
latency (arrival minus the ``sent_at`` the sender put in the payload)."""

from __future__ import annotations

import time

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

latencies_ms: list[float] = []
arrivals: list[float] = []
ids: set[str] = set()


async def hook(request: Request) -> Response:
    now = time.time()
    payload = orjson.loads(await request.body())
    latencies_ms.append((now - payload["sent_at"]) * 1000)
    arrivals.append(now)
    ids.add(request.headers["webhook-id"])
    return Response(b"ok")


async def stats(request: Request) -> JSONResponse:
    return JSONResponse({"latencies_ms": latencies_ms, "unique": len(ids),
                         "first": min(arrivals, default=0), "last": max(arrivals, default=0)})


async def reset(request: Request) -> JSONResponse:
    latencies_ms.clear()
    arrivals.clear()
    ids.clear()
    return JSONResponse({"reset": True})


app = Starlette(routes=[Route("/hook", hook, methods=["POST"]), Route("/stats", stats),
                        Route("/reset", reset, methods=["POST"])])
