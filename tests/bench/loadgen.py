"""A minimal keep-alive HTTP/1.1 load generator on asyncio streams.

httpx spends ~2 ms of CPU per request, so as a load generator it measures
itself; this sends pre-built requests over N persistent connections and reads
only the status line, headers and Content-Length body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit

from tests.bench.common import read_response

__all__ = ["post_many"]

RequestMaker = Callable[[int], tuple[bytes, dict[str, str]]]


async def _connection(host: str, port: int, path: str, make: RequestMaker, queue: asyncio.Queue[int],
                      statuses: list[int], due: Callable[[int], float] | None) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                n = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if due is not None:
                await asyncio.sleep(due(n) - loop.time())
            body, headers = make(n)
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode()
                + body
            )
            status, _ = await read_response(reader)
            statuses.append(status)
    finally:
        writer.close()


async def post_many(url: str, make: RequestMaker, total: int, connections: int,
                    rate: float | None = None) -> list[int]:
    """POST ``total`` requests built by ``make(n)``; returns every response status.

    As fast as the connections go, or with ``rate``, request n at n / rate seconds
    from the start (an open-loop load, for latency at a load below capacity).
    """
    parts = urlsplit(url)
    start = asyncio.get_running_loop().time()
    due = None if rate is None else (lambda n: start + n / rate)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(total):
        queue.put_nowait(n)
    statuses: list[int] = []
    await asyncio.gather(*(
        _connection(parts.hostname or "127.0.0.1", parts.port or 80, parts.path, make, queue, statuses, due)
        for _ in range(connections)
    ))
    return statuses
