"""A fast loopback receiver for the delivery benchmarks.

A plain asyncio protocol with httptools' parser (what uvicorn uses): it costs
a few tens of microseconds per request, so the benchmark measures the sender,
not the receiver. It counts deliveries and distinct ``webhook-id``s, and
records each delivery's latency from the ``sent_at`` in the payload, when
there is one. ``GET /count`` (cheap to poll), ``GET /stats`` (with every
latency) and ``POST /reset`` answer JSON.

    python -m tests.bench.fast_receiver PORT
"""

from __future__ import annotations

import asyncio
import sys
import time

import httptools
import orjson

latencies_ms: list[float] = []
ids: set[str] = set()
stats = {"deliveries": 0, "first": 0.0, "last": 0.0}

_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


def _json_response(value: object) -> bytes:
    body = orjson.dumps(value)
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


class Receiver(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.webhook_id = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url, self.webhook_id, self.body = b"", b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"webhook-id":
            self.webhook_id = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        if path == b"/count":  # cheap to poll while waiting
            self.transport.write(_json_response({"deliveries": stats["deliveries"], "unique": len(ids)}))
            return
        if path == b"/stats":
            self.transport.write(_json_response({"latencies_ms": latencies_ms, "unique": len(ids), **stats}))
            return
        if path == b"/reset":
            latencies_ms.clear()
            ids.clear()
            stats.update(deliveries=0, first=0.0, last=0.0)
            self.transport.write(_json_response({"reset": True}))
            return
        now = time.time()
        stats["deliveries"] += 1
        stats["first"] = stats["first"] or now
        stats["last"] = now
        ids.add(self.webhook_id.decode())
        try:
            sent_at = orjson.loads(b"".join(self.body)).get("sent_at")
        except (orjson.JSONDecodeError, AttributeError):
            sent_at = None
        if isinstance(sent_at, (int, float)):
            latencies_ms.append((now - sent_at) * 1000)
        self.transport.write(_OK)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Receiver, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve(int(sys.argv[1])))
