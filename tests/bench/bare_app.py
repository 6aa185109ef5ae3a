"""The baseline: a bare Starlette route that only publishes to JetStream and awaits the ack.

Run by ingest_bench.py beside the real edge, on the same NATS server, with the
same event loop and HTTP parser, so the difference is what the edge adds
(source lookup, signature check, JSON parsing, the event envelope).
"""

from __future__ import annotations

import contextlib
import os
import uuid

import nats
from nats.js import api
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

state: dict = {}


async def publish(request: Request) -> JSONResponse:
    body = await request.body()
    msg_id = uuid.uuid4().hex
    await state["js"].publish("bare.events", body, headers={"Nats-Msg-Id": msg_id}, timeout=5)
    return JSONResponse({"event_id": msg_id}, status_code=202)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    nc = await nats.connect(os.environ["SWITCHBOARD_NATS_URL"])
    js = nc.jetstream()
    await js.add_stream(api.StreamConfig(name="BARE", subjects=["bare.>"], storage=api.StorageType.FILE,
                                         retention=api.RetentionPolicy.WORK_QUEUE, duplicate_window=7200.0,
                                         max_bytes=1024**3))
    state["js"] = js
    yield
    await nc.drain()


app = Starlette(routes=[Route("/publish", publish, methods=["POST"])], lifespan=lifespan)
