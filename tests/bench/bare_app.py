"""The floor for ingest: the fastest way the edge's own stack can do the bare job.

A raw ASGI app (no framework object at all) served by uvicorn on uvloop with
httptools, as the edge is: read the body, publish it to JetStream with a
message id, await the ack, answer 202 with a small JSON body. Same event loop,
same HTTP parser, same NATS client and server as the edge, and the fastest
publish this stack has (the lean ``StreamPublisher`` the edge uses, not
nats-py's ``js.publish``), so what ingest_bench.py measures between the two
is what the edge itself adds (route dispatch, source lookup, signature check,
JSON parsing, the event envelope, security headers, telemetry).

    uvicorn tests.bench.bare_app:app --loop uvloop --http httptools --no-proxy-headers --no-server-header
"""

from __future__ import annotations

import hmac
import os
import time

import nats
import orjson
from nats.js import api

from switchboard.messaging import StreamPublisher

_js: StreamPublisher | None = None  # set by the lifespan

# How the floors are served: as the edge is (services/ingest/app.py), on uvloop with httptools,
# without proxy-header handling or a server header.
UVICORN_ARGS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
                "--no-proxy-headers", "--no-server-header"]

_HEADERS = [(b"content-type", b"application/json")]


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    body = await read_body(receive)
    msg_id = os.urandom(16).hex()
    assert _js is not None
    await _js.publish("bare.events", body, headers={"Nats-Msg-Id": msg_id}, timeout=5)
    body = orjson.dumps({"event_id": msg_id})
    await send({"type": "http.response.start", "status": 202,
                "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# -- the floor plus what a webhook gateway must do for each webhook (uvicorn tests.bench.bare_app:essential_app) --

ESSENTIAL_SECRET = b"whsec_essential_bench"
_sources = {"src_bench": ("ten_bench", [10_000.0, 0.0])}  # tenant, token bucket (tokens, last refill)
_RATE, _BURST = 1e6, 1e6
_CONTAINED = [(b"x-content-type-options", b"nosniff"), (b"content-security-policy", b"default-src 'none'; sandbox")]


async def essential_app(scope, receive, send) -> None:
    """What no implementation of the edge's contract can leave out, written as tersely as the floor:
    find the source, take a rate-limit token, check the HMAC, parse the JSON, wrap it in an event
    (id, tenant, type, time, payload, the body and headers as received), publish that, answer 202 with
    the event id and the headers that keep a browser from sniffing the answer. No plugins, errors,
    metrics or tracing: ingest_bench.py reports it as the ceiling any edge could reach."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    received_at = time.time()
    body = await read_body(receive)
    source_id = scope["path"].rpartition("/")[2]
    tenant_id, bucket = _sources[source_id]
    bucket[0] = min(_BURST, bucket[0] + (received_at - bucket[1]) * _RATE) - 1
    bucket[1] = received_at
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    if bucket[0] < 0 or not hmac.compare_digest(hmac.digest(ESSENTIAL_SECRET, body, "sha256").hex(),
                                                headers.get("x-signature", "")):
        await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    payload = orjson.loads(body)
    event_id = f"evt_{os.urandom(16).hex()}"
    event = {"id": event_id, "tenant_id": tenant_id, "source_id": source_id, "type": payload.get("type", "webhook"),
             "received_at": received_at, "payload": payload, "body": body.decode(), "headers": headers}
    assert _js is not None
    await _js.publish("bare.events", orjson.dumps(event), headers={"Nats-Msg-Id": event_id}, timeout=5)
    answer = orjson.dumps({"event_id": event_id, "duplicate": False})
    await send({"type": "http.response.start", "status": 202,
                "headers": [*_HEADERS, (b"content-length", str(len(answer)).encode()), *_CONTAINED,
                            (b"switchboard-event-id", event_id.encode())]})
    await send({"type": "http.response.body", "body": answer})


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
            _js = StreamPublisher(nc)
            await nc.jetstream().add_stream(api.StreamConfig(
                name="BARE", subjects=["bare.>"], storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.WORK_QUEUE, duplicate_window=7200.0, max_bytes=1024**3))
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if nc is not None:
                await nc.drain()
            await send({"type": "lifespan.shutdown.complete"})
            return
