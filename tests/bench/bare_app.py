"""The floor for ingest: the fastest way the edge's own stack can do the bare job.

A raw ASGI app (no framework object at all) served by uvicorn on uvloop with
httptools, as the edge is: read the body, publish it to JetStream with a
message id, await the ack, answer 202 with a small JSON body. Same event loop,
same HTTP parser, same NATS client and server as the edge, so what
ingest_bench.py measures between the two is what the edge itself adds (route
dispatch, source lookup, signature check, JSON parsing, the event envelope,
telemetry).

    uvicorn tests.bench.bare_app:app --loop uvloop --http httptools
"""

from __future__ import annotations

import os
import uuid

import nats
import orjson
from nats.js import api

_js = None

_HEADERS = [(b"content-type", b"application/json")]


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    body = await read_body(receive)
    msg_id = uuid.uuid4().hex
    await _js.publish("bare.events", body, headers={"Nats-Msg-Id": msg_id}, timeout=5)
    body = orjson.dumps({"event_id": msg_id})
    await send({"type": "http.response.start", "status": 202,
                "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(receive, send) -> None:
    global _js
    nc = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            nc = await nats.connect(os.environ["SWITCHBOARD_NATS_URL"])
            _js = nc.jetstream()
            await _js.add_stream(api.StreamConfig(
                name="BARE", subjects=["bare.>"], storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.WORK_QUEUE, duplicate_window=7200.0, max_bytes=1024**3))
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if nc is not None:
                await nc.drain()
            await send({"type": "lifespan.shutdown.complete"})
            return
