"""``GET /v1/listen``: a source's (or a route's) events as they arrive, as Server-Sent Events.

What ``switchboard listen`` reads to forward a running platform's events to a
developer's laptop (as ``stripe listen`` does): the connection goes out from
the laptop, so no inbound port is needed there. Guarded like every ``/v1``
route (an API key with the ``read`` scope); the source or route must be the
key's tenant's (another tenant's is 404, as everywhere).

Live events come from NATS itself, not from a store: every edge process
subscribes (plain core NATS, beside the JetStream consumers, which it takes
nothing from) to the subject the intake publishes the source's events on, or,
for a route, to the router's outcomes, fetching each matched event from the
router. ``replay=N`` first sends the last N stored events (oldest first), and
``since`` limits them to those received at or after a time: a listener that
reconnects asks for what it missed. A listener that reads too slowly loses
events beyond its queue, and is told how many (``event: dropped``): the
platform never waits for a laptop.

Each event is one ``event: event`` frame whose ``id`` is the event id and whose
``data`` is JSON: ``id``, ``type``, ``source_id``, ``received_at`` (Unix
seconds), ``body`` (the body as received, as text), ``content_type`` (the
Content-Type it came with), and ``replayed``. A body that is not text (binary,
not UTF-8) comes as ``body_base64`` instead, ``body`` then null.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any

import orjson
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.msg import Msg
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.context import EdgeContext
from gateway.guard import Admitted, admit
from switchboard.bodies import JSON_MEDIA, body_fields
from switchboard.errors import InvalidRequest, RateLimited
from switchboard.events import Event, RoutingOutcome, event_subject, routing_outcome_subject
from switchboard.messaging import decode
from switchboard.rpc import call
from switchboard.v1 import ingest_pb2, ingest_pb2_grpc, router_pb2, router_pb2_grpc

__all__ = ["LISTEN_PATH", "MAX_REPLAY", "listen_routes"]

logger = logging.getLogger(__name__)

LISTEN_PATH = "/v1/listen"
MAX_REPLAY = 100
# Events waiting for a slow listener; more are dropped (and counted to it).
QUEUE_LIMIT = 1000
# A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_S = 15.0
# Listeners one edge process serves at once: each holds a subscription and a queue.
MAX_LISTENERS = 100

_listeners = 0


@dataclass(frozen=True)
class _Selection:
    source_id: str | None
    route_id: str | None
    replay: int
    since: datetime | None


def _selection(request: Request) -> _Selection:
    query = request.query_params
    unknown = sorted(set(query) - {"source_id", "route_id", "replay", "since"})
    if unknown:
        raise InvalidRequest(f"unknown query parameters: {', '.join(unknown)}", field=unknown[0])
    source_id, route_id = query.get("source_id") or None, query.get("route_id") or None
    if (source_id is None) == (route_id is None):
        raise InvalidRequest("give exactly one of source_id and route_id", field="source_id")
    for name, value in (("source_id", source_id), ("route_id", route_id)):
        if value is not None and (len(value) > 64 or not value.replace("_", "").replace("-", "").isalnum()):
            raise InvalidRequest(f"{name} is an id: letters, digits, _ and -", field=name)
    try:
        replay = int(query.get("replay", "0"))
    except ValueError:
        raise InvalidRequest(f"replay is an integer from 0 to {MAX_REPLAY}", field="replay") from None
    if not 0 <= replay <= MAX_REPLAY:
        raise InvalidRequest(f"replay is an integer from 0 to {MAX_REPLAY}", field="replay")
    since = None
    if "since" in query:
        try:
            since = datetime.fromisoformat(query["since"].replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest("since is an ISO 8601 time, e.g. 2026-12-01T10:00:00Z", field="since") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    return _Selection(source_id, route_id, replay, since)


def _frame(event: dict[str, Any]) -> bytes:
    return b"id: " + event["id"].encode() + b"\nevent: event\ndata: " + orjson.dumps(event) + b"\n\n"


def _listened(event: Event, replayed: bool = False) -> dict[str, Any]:
    kept = event.body is not None
    return {"id": event.id, "type": event.type, "source_id": event.source_id, "received_at": event.received_at,
            **body_fields(event.body if kept else orjson.dumps(event.payload)),
            "content_type": event.content_type if kept and event.content_type else JSON_MEDIA, "replayed": replayed}


def _stored(event: router_pb2.Event, replayed: bool) -> dict[str, Any]:
    """A stored event: a body that is not JSON as GetEvent shows it, else the payload's JSON."""
    body: dict[str, Any] = {"body": event.payload_json}
    if event.body_base64:
        body = {"body": None, "body_base64": event.body_base64}
    elif event.body_text:
        body = {"body": event.body_text}
    return {"id": event.id, "type": event.type, "source_id": event.source_id,
            "received_at": event.received_at.ToDatetime(tzinfo=UTC).timestamp(), **body,
            "content_type": event.content_type if event.body_base64 or event.body_text else JSON_MEDIA,
            "replayed": replayed}


class _Listener:
    """One listener's subscription, queue and the calls it makes with the caller's own key."""

    def __init__(self, edge: EdgeContext, admitted: Admitted, selection: _Selection) -> None:
        self.edge = edge
        self.tenant_id = admitted.principal.tenant_id
        self.selection = selection
        self.metadata = (("authorization", f"Bearer {admitted.credential}"),)
        self.router = router_pb2_grpc.RouterServiceStub(edge.clients.channel("router"))
        self.queue: asyncio.Queue[dict[str, Any] | str] = asyncio.Queue(QUEUE_LIMIT)
        self.dropped = 0
        self._fetches: set[asyncio.Task] = set()
        self._subscription: Any = None

    async def check_exists(self) -> None:
        """404 unless the source or route is the caller's tenant's (the services bind the tenant)."""
        timeout = self.edge.clients.timeout
        if self.selection.source_id is not None:
            stub = ingest_pb2_grpc.IngestServiceStub(self.edge.clients.channel("ingest"))
            await call(stub.GetSource(ingest_pb2.GetSourceRequest(id=self.selection.source_id),
                                      metadata=self.metadata, timeout=timeout))
        else:
            await call(self.router.GetRoute(router_pb2.GetRouteRequest(id=self.selection.route_id or ""),
                                            metadata=self.metadata, timeout=timeout))

    async def subscribe(self) -> None:
        if self.selection.source_id is not None:
            subject = event_subject(self.tenant_id, self.selection.source_id)
            self._subscription = await self.edge.nc.subscribe(subject, cb=self._on_event)
        else:
            subject = routing_outcome_subject(self.tenant_id)
            self._subscription = await self.edge.nc.subscribe(subject, cb=self._on_outcome)

    def _offer(self, item: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _on_event(self, msg: Msg) -> None:
        try:
            self._offer(_listened(Event.from_message(decode(msg.data))))
        except ValueError as exc:
            logger.warning("unreadable event not listened", extra={"subject": msg.subject, "error": str(exc)})

    async def _on_outcome(self, msg: Msg) -> None:
        try:
            outcome = RoutingOutcome.from_message(decode(msg.data))
        except ValueError as exc:
            logger.warning("unreadable outcome not listened", extra={"subject": msg.subject, "error": str(exc)})
            return
        if self.selection.route_id in outcome.route_ids:
            # The outcome names the event; its body is in the router's store, where it was stored first.
            task = asyncio.create_task(self._fetch(outcome.event_id))
            self._fetches.add(task)
            task.add_done_callback(self._fetches.discard)

    async def _fetch(self, event_id: str) -> None:
        try:
            event = await call(self.router.GetEvent(router_pb2.GetEventRequest(id=event_id), metadata=self.metadata,
                                                    timeout=self.edge.clients.timeout))
        except Exception as exc:
            self._offer({"error": f"event {event_id} matched but could not be read: {exc}"} | {"id": event_id})
            return
        self._offer(_stored(event, replayed=False))

    async def replayed(self) -> list[dict[str, Any]]:
        """The last ``replay`` stored events, oldest first."""
        if not self.selection.replay:
            return []
        request = router_pb2.ListEventsRequest(limit=self.selection.replay)
        if self.selection.source_id is not None:
            request.source_id = self.selection.source_id
        else:
            request.route_id = self.selection.route_id or ""
        if self.selection.since is not None:
            request.since.CopyFrom(_timestamp(self.selection.since))
        timeout = self.edge.clients.timeout
        page = await call(self.router.ListEvents(request, metadata=self.metadata, timeout=timeout))
        events = await asyncio.gather(*(
            call(self.router.GetEvent(router_pb2.GetEventRequest(id=summary.id), metadata=self.metadata,
                                      timeout=timeout))
            for summary in reversed(page.events)))
        return [_stored(event, replayed=True) for event in events]

    async def frames(self, replayed: list[dict[str, Any]]) -> AsyncIterator[bytes]:
        # The browser's EventSource (and our CLI) reconnect after this long.
        yield b"retry: 2000\n: listening\n\n"
        sent = set()
        for event in replayed:
            sent.add(event["id"])
            yield _frame(event)
        while True:
            try:
                item = await asyncio.wait_for(self.queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if self.dropped:
                yield b"event: dropped\ndata: " + orjson.dumps({"dropped": self.dropped}) + b"\n\n"
                self.dropped = 0
            if isinstance(item, dict) and "error" in item:
                yield b"event: error\ndata: " + orjson.dumps(item) + b"\n\n"
            elif isinstance(item, dict) and item["id"] not in sent:
                yield _frame(item)

    async def close(self) -> None:
        for task in list(self._fetches):
            task.cancel()
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def listen(request: Request) -> Response:
    global _listeners
    edge: EdgeContext = request.app.state.edge
    admitted = await admit(request, "read")
    selection = _selection(request)
    if _listeners >= MAX_LISTENERS:
        raise RateLimited("this edge process serves as many listeners as it can; retry later", retry_after_s=5)
    listener = _Listener(edge, admitted, selection)
    await listener.check_exists()
    # Subscribed before the replay is read, so nothing falls between the two (the frames skip repeats).
    await listener.subscribe()
    try:
        replayed = await listener.replayed()
    except BaseException:
        await listener.close()
        raise
    _listeners += 1
    headers = {"cache-control": "no-cache", "x-accel-buffering": "no", **admitted.verdict.headers()}
    return _Stream(listener, replayed, headers)


class _Stream(StreamingResponse):
    """The listener's frames; its subscription closed however the response ends (a client gone before the
    first frame included: a generator that never started would never run its ``finally``)."""

    def __init__(self, listener: _Listener, replayed: list[dict[str, Any]], headers: dict[str, str]) -> None:
        super().__init__(listener.frames(replayed), media_type="text/event-stream", headers=headers)
        self.listener = listener

    async def __call__(self, scope, receive, send) -> None:
        global _listeners
        started = time.monotonic()
        try:
            await super().__call__(scope, receive, send)
        finally:
            _listeners -= 1
            await self.listener.close()
            logger.info("listener left", extra={"tenant_id": self.listener.tenant_id,
                                                "seconds": round(time.monotonic() - started, 1)})


def listen_routes() -> list[Route]:
    """``GET /v1/listen`` (a stream, so not an RPC of the contract nor an operation of /openapi.json)."""
    return [Route(LISTEN_PATH, listen, methods=["GET"])]
