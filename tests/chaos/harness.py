"""The chaos suite's two ends: a receiver that logs every delivery, a sender that keeps a steady rate.

``ChaosReceiver`` stands in for a customer's endpoint on loopback: it logs each
request's ``webhook-id`` (the delivery's id, the same on every retry),
``x-switchboard-event-id`` and the sender's body id, with the time and the
status it answered, and can be told to fail (500/503) for a while.

``Sender`` stands in for a provider: signed webhooks to ``POST /in/{source}``
at a steady rate over a few keep-alive connections, each event with its own
body id, also sent in the source's ``id_header`` so the edge derives the same
event id for every retry of it. It logs every answer (status, the
``Switchboard-Event-Id`` of a 202) and every connection error, and retries a
webhook after a short, growing pause on 429, 5xx and errors, as a provider
would, until it is accepted or its give-up time passes (a try takes at most
its connection wait, 5 s, plus its timeout, 10 s). All times are
``time.monotonic()``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.e2e.slice import signed

__all__ = ["Answer", "ChaosReceiver", "ID_HEADER", "Receipt", "SentEvent", "Sender"]

#: The header the chaos source's config names as its ``id_header`` (the provider's delivery id).
ID_HEADER = "x-chaos-id"

# Errors raised before a request could reach the edge: the webhook was certainly not accepted.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Receipt:
    """One request the receiver got."""

    at: float
    webhook_id: str
    event_id: str
    key: str | None  # the sender's body id
    status: int  # what the receiver answered

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        # A killed delivery process resets its keep-alive connections: expected here, not worth a traceback.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class ChaosReceiver:
    """A loopback endpoint that records every request; ``fail_for`` makes it answer 500/503 for a while."""

    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self._lock = threading.Lock()
        self._failing_until = 0.0
        self._fail_statuses: itertools.cycle[int] = itertools.cycle((503,))
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status = receiver._record(self.headers.get("webhook-id", ""),
                                          self.headers.get("x-switchboard-event-id", ""), body)
                payload = b"ok" if status < 300 else b"not now"
                try:
                    self.send_response(status)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> ChaosReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_for(self, seconds: float, statuses: tuple[int, ...] = (500, 503)) -> None:
        """Answer ``statuses`` in turn to every request for ``seconds`` from now."""
        with self._lock:
            self._fail_statuses = itertools.cycle(statuses)
            self._failing_until = time.monotonic() + seconds

    def recover(self) -> None:
        with self._lock:
            self._failing_until = 0.0

    def snapshot(self) -> list[Receipt]:
        with self._lock:
            return list(self.receipts)

    def _record(self, webhook_id: str, event_id: str, body: bytes) -> int:
        try:
            key = json.loads(body).get("id")
        except (ValueError, AttributeError):
            key = None
        with self._lock:
            now = time.monotonic()
            status = next(self._fail_statuses) if now < self._failing_until else 200
            self.receipts.append(Receipt(now, webhook_id, event_id, key if isinstance(key, str) else None, status))
        return status


@dataclass(frozen=True)
class Answer:
    """One try of one webhook: the edge's status, or the error that stood in for it."""

    started: float
    at: float
    status: int | None = None
    error: str | None = None
    event_id: str | None = None
    # False when the request certainly never reached the edge (connection refused).
    reached: bool = True

    @property
    def accepted(self) -> bool:
        return self.status == 202

    @property
    def ambiguous(self) -> bool:
        """An answer that does not prove the webhook was refused: a 5xx, a timeout, a dropped connection."""
        if self.status is not None:
            return self.status >= 500
        return self.reached


@dataclass
class SentEvent:
    key: str
    seq: int
    answers: list[Answer] = field(default_factory=list)

    @property
    def accepted_at(self) -> float | None:
        return next((a.at for a in self.answers if a.accepted), None)

    @property
    def event_ids(self) -> set[str]:
        """Every event id a 202 named for this webhook (one, when retries dedupe)."""
        return {a.event_id for a in self.answers if a.accepted and a.event_id}

    @property
    def ambiguous(self) -> bool:
        return any(a.ambiguous for a in self.answers)


class Sender:
    """``count`` signed webhooks at ``rate`` per second, each retried until accepted or ``give_up_s`` after the last."""

    def __init__(self, edge_url: str, source_id: str, secret: str, *, rate: float, count: int,
                 give_up_s: float = 30.0, connections: int = 8, timeout_s: float = 10.0) -> None:
        self.url = f"{edge_url}/in/{source_id}"
        self.secret = secret
        self.rate = rate
        self.count = count
        self.give_up_s = give_up_s
        self.connections = connections
        self.timeout_s = timeout_s
        run = f"{random.getrandbits(40):010x}"
        self.events = [SentEvent(f"chaos-{run}-{seq:06d}", seq) for seq in range(count)]
        self.started = 0.0
        self.finished_sending = 0.0

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)
        # A bounded wait for a connection too: with the edge hanging, every try would otherwise queue
        # behind the few connections for ever and never reach its give-up time.
        timeout = httpx.Timeout(self.timeout_s, connect=5.0, pool=5.0)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            self.started = time.monotonic()
            give_up_at = self.started + self.count / self.rate + self.give_up_s
            tasks = []
            for sent in self.events:
                delay = self.started + sent.seq / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self._deliver(client, sent, give_up_at)))
            self.finished_sending = time.monotonic()
            await asyncio.gather(*tasks)

    async def _deliver(self, client: httpx.AsyncClient, sent: SentEvent, give_up_at: float) -> None:
        body, headers = signed(self.secret, {"type": "chaos.event", "id": sent.key, "seq": sent.seq})
        headers[ID_HEADER] = sent.key
        for tries in itertools.count():
            answer = await self._try(client, body, headers)
            sent.answers.append(answer)
            if answer.accepted or (answer.status is not None and 400 <= answer.status < 500
                                   and answer.status != 429):
                return  # accepted, or refused for good (a provider does not retry a 4xx)
            if time.monotonic() >= give_up_at:
                return
            await asyncio.sleep(min(0.25 * 2 ** tries, 4.0) * random.uniform(0.8, 1.2))

    async def _try(self, client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> Answer:
        started = time.monotonic()
        try:
            reply = await client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Answer(started, time.monotonic(), error=type(exc).__name__, reached=not isinstance(exc, _NOT_SENT))
        return Answer(started, time.monotonic(), status=reply.status_code,
                      event_id=reply.headers.get("switchboard-event-id"))
