"""Ordered delivery per key: one delivery of a key in flight at a time, earliest accepted first.

An endpoint with ``ordering: "per_key"`` names a JSON path into the payload
(``ordering_key``); deliveries with the same value there go one at a time, in
the order the edge received their events (``received_at``; ties by delivery
id). Different keys go in parallel. See docs/ordering.md.

How it holds with several delivery processes and across crashes:

- **Parked in PostgreSQL.** A delivery to an ordered endpoint is parked as it
  comes off the DELIVERIES stream (:meth:`KeyQueue.park`: its row, with its
  message, in ``delivery.ordered_queue``; its key's row in
  ``delivery.ordered_keys``), and only then is its stream message acked. From
  there on PostgreSQL has it: nothing acknowledged is lost.
- **One head per key, claimed with a lease.** Each process's :class:`Sequencer`
  claims keys whose head may go (``FOR UPDATE SKIP LOCKED`` on the key's row,
  so one process gets each), marks the key in flight with a token and a
  lease it renews, and hands the head to the worker's usual pipeline (holds,
  send, settle, record, dead letter). Settled (succeeded or dead), the head's
  row goes and the key is free at once; to be tried again, the key waits
  until then, still held by the head. A process killed mid-send leaves its
  lease to run out (LEASE_S): the same head is claimed again, finds its
  recorded state, and is never overtaken by the next one.
- **Nothing earlier still upstream.** An event accepted before the head may
  not have reached the queue yet: still in EVENTS (the router acks an event
  only after its deliveries are published), or published to DELIVERIES and
  not parked yet. :class:`Upstream` reads both from JetStream before the heads
  are chosen; a head younger than the tenant's oldest unrouted event, or of a
  key with a delivery on its way to the queue, waits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from psycopg_pool import AsyncConnectionPool

from switchboard.batching import Batcher
from switchboard.database import atomically, jsonb, storable_json
from switchboard.events import DeliveryMessage
from switchboard.messaging import ACK, TERM, Decision, decode

__all__ = ["KeyPath", "parse_key_path", "key_of", "ordering_key", "Head", "KeyQueue", "Marks", "Upstream",
           "Sequencer", "LEASE_S"]

logger = logging.getLogger(__name__)

# How long a claimed key stays with its process without a renewal: after a crash, its head waits this long.
LEASE_S = 10.0
# Messages of one endpoint on their way to the queue read per look; beyond it, the whole endpoint waits.
SCAN_LIMIT = 200
# A key value longer than this is kept as its hash.
MAX_KEY_CHARS = 200

KeyPath = tuple[str | int, ...]

_SEGMENT = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d{1,6})\]|\['([^'\\]{1,200})'\]|\["([^"\\]{1,200})"\]""")


def parse_key_path(path: str) -> KeyPath:
    """``$.data.object.customer``, ``$.items[0].id``, ``$['x-y']``: the steps into the payload;
    ValueError saying what is wrong otherwise."""
    if not path.startswith("$"):
        raise ValueError('a JSON path starts with "$", as in $.data.object.customer')
    steps: list[str | int] = []
    at = 1
    while at < len(path):
        found = _SEGMENT.match(path, at)
        if found is None:
            raise ValueError(f"unexpected {path[at:at + 20]!r} at character {at + 1}: use .name, [index] or ['name']")
        name, index, single, double = found.groups()
        steps.append(int(index) if index is not None else (name or single or double))
        at = found.end()
    if not steps:
        raise ValueError("the path must name a field, as in $.data.object.customer")
    if len(steps) > 20:
        raise ValueError("the path is more than 20 steps deep")
    return tuple(steps)


def key_of(path: KeyPath, payload: Any) -> str | None:
    """The key of a payload: the string, number or boolean at ``path``; None when absent or not one of those."""
    value = payload
    for step in path:
        if isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict) and step in value:
            value = value[step]
        else:
            return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bool, int, float)):
        text = orjson.dumps(value).decode()
    else:
        return None
    return text if len(text) <= MAX_KEY_CHARS else "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def ordering_key(path: KeyPath, message: DeliveryMessage) -> str:
    """The key a delivery is queued under: ``k:<value>``; one without a value is a key of its own
    (``d:<delivery id>``), so it waits for nothing and holds nothing up."""
    key = key_of(path, message.payload)
    return f"k:{key}" if key is not None else f"d:{message.delivery_id}"


@dataclass(frozen=True)
class Head:
    """A key's first delivery, claimed by this process under ``token``."""

    endpoint_id: str
    key: str
    delivery_id: str
    token: str
    message: dict[str, Any]


@dataclass(frozen=True)
class Marks:
    """What is still upstream, read from JetStream before heads are chosen.

    ``accepted_before``: per tenant, when its oldest event not yet routed was
    stored (absent: none); a head received at or after it may go. ``blocked``:
    per endpoint, the keys with a delivery published but not parked yet (None:
    too many to read; the endpoint's ordered keys all wait).
    """

    # The endpoints looked at: only their keys are claimed.
    endpoints: frozenset[str] = frozenset()
    accepted_before: Mapping[str, float] = field(default_factory=dict)
    blocked: Mapping[str, frozenset[str] | None] = field(default_factory=dict)

    def allows(self, tenant_id: str, endpoint_id: str, key: str, received_at: float) -> bool:
        if endpoint_id not in self.endpoints:
            return False
        if key.startswith("d:"):
            return True  # no key: nothing to keep in order
        if endpoint_id in self.blocked:
            blocked = self.blocked[endpoint_id]
            if blocked is None or key in blocked:
                return False
        bound = self.accepted_before.get(tenant_id)
        return bound is None or received_at <= bound


class KeyQueue:
    """The parked deliveries of ordered endpoints, by key, in PostgreSQL."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        self._parks: Batcher[tuple[DeliveryMessage, str], None] = Batcher(self._park_all, max_concurrent=2)
        self._settles: Batcher[tuple[Head, bool, float], None] = Batcher(self._settle_all, max_concurrent=2)

    async def park(self, message: DeliveryMessage, key: str) -> None:
        """Queue a delivery under its key (again: nothing changes). Durable when this returns."""
        await self._parks.submit((message, key))

    async def _park_all(self, items: Sequence[tuple[DeliveryMessage, str]]) -> list[None]:
        # Keys locked in one order by every statement that locks several: no deadlock between batches.
        rows = sorted(({"delivery_id": m.delivery_id, "endpoint_id": m.endpoint_id, "tenant_id": m.tenant_id,
                        "ordering_key": key, "received_at": m.received_at, "message": storable_json(m.to_message())}
                       for m, key in items), key=lambda r: (r["endpoint_id"], r["ordering_key"]))
        async with self.pool.connection() as conn, atomically(conn, 2):
            # The key's row first (locked by the upsert): a settle that empties the key at the same
            # time either sees this delivery or leaves the key for this statement to create again.
            await conn.execute(
                """INSERT INTO delivery.ordered_keys (endpoint_id, ordering_key, tenant_id)
                   SELECT DISTINCT endpoint_id, ordering_key, tenant_id
                   FROM jsonb_to_recordset(%s::jsonb) AS g(endpoint_id text, ordering_key text, tenant_id text)
                   ORDER BY endpoint_id, ordering_key
                   ON CONFLICT (endpoint_id, ordering_key) DO UPDATE SET ready_at = delivery.ordered_keys.ready_at""",
                (jsonb(rows),))
            await conn.execute(
                """INSERT INTO delivery.ordered_queue (delivery_id, endpoint_id, ordering_key, received_at, message)
                   SELECT delivery_id, endpoint_id, ordering_key, received_at, message
                   FROM jsonb_to_recordset(%s::jsonb) AS g(delivery_id text, endpoint_id text, ordering_key text,
                                                            received_at float8, message jsonb)
                   ON CONFLICT (delivery_id) DO NOTHING""",
                (jsonb(rows),))
        return [None] * len(items)

    async def ready_endpoints(self, limit: int = 500) -> list[tuple[str, str]]:
        """(tenant, endpoint) of keys whose head may be claimed now, as far as the keys go."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT DISTINCT tenant_id, endpoint_id FROM (
                       SELECT tenant_id, endpoint_id FROM delivery.ordered_keys
                       WHERE ready_at <= now() AND (in_flight IS NULL OR claimed_until < now())
                       ORDER BY ready_at LIMIT %s) ready""", (limit,))
            return [(row["tenant_id"], row["endpoint_id"]) for row in await cur.fetchall()]

    async def claim(self, limit: int, marks: Marks) -> list[Head]:
        """Up to ``limit`` heads, each of a key nobody holds, that ``marks`` lets go; each key taken is
        held for LEASE_S (see :meth:`renew`). Keys passed over wait a moment, so others get their turn."""
        async with self.pool.connection() as conn, atomically(conn, 4):
            cur = await conn.execute(
                """SELECT endpoint_id, ordering_key, tenant_id FROM delivery.ordered_keys
                   WHERE ready_at <= now() AND (in_flight IS NULL OR claimed_until < now())
                     AND endpoint_id = ANY(%s)
                   ORDER BY ready_at LIMIT %s FOR UPDATE SKIP LOCKED""", (sorted(marks.endpoints), limit * 4))
            keys = await cur.fetchall()
            if not keys:
                return []
            cur = await conn.execute(
                """SELECT DISTINCT ON (q.endpoint_id, q.ordering_key)
                          q.endpoint_id, q.ordering_key, q.delivery_id, q.received_at, q.message
                   FROM delivery.ordered_queue q
                   JOIN unnest(%s::text[], %s::text[]) AS k(endpoint_id, ordering_key) USING (endpoint_id, ordering_key)
                   ORDER BY q.endpoint_id, q.ordering_key, q.started DESC, q.received_at, q.delivery_id""",
                ([k["endpoint_id"] for k in keys], [k["ordering_key"] for k in keys]))
            heads = {(h["endpoint_id"], h["ordering_key"]): h for h in await cur.fetchall()}
            taken: list[Head] = []
            waiting: list[dict[str, str]] = []
            for k in keys:
                head = heads.get((k["endpoint_id"], k["ordering_key"]))
                if head is None:
                    continue  # emptied meanwhile; dropped below
                if len(taken) < limit and marks.allows(k["tenant_id"], k["endpoint_id"], k["ordering_key"],
                                                       head["received_at"]):
                    taken.append(Head(k["endpoint_id"], k["ordering_key"], head["delivery_id"], uuid.uuid4().hex,
                                      head["message"]))
                else:
                    waiting.append({"endpoint_id": k["endpoint_id"], "ordering_key": k["ordering_key"]})
            given = [{"endpoint_id": h.endpoint_id, "ordering_key": h.key, "token": h.token,
                      "delivery_id": h.delivery_id} for h in taken]
            await conn.execute(
                """WITH given AS (SELECT * FROM jsonb_to_recordset(%s::jsonb)
                                      AS g(endpoint_id text, ordering_key text, token text, delivery_id text)),
                        held AS (UPDATE delivery.ordered_keys k
                                 SET in_flight = g.token, claimed_until = now() + make_interval(secs => %s)
                                 FROM given g WHERE (k.endpoint_id, k.ordering_key) = (g.endpoint_id, g.ordering_key))
                   UPDATE delivery.ordered_queue q SET started = true
                   FROM given g WHERE q.delivery_id = g.delivery_id AND NOT q.started""",
                (jsonb(given), LEASE_S))
            await conn.execute(
                """UPDATE delivery.ordered_keys k SET ready_at = now() + interval '20 milliseconds'
                   FROM jsonb_to_recordset(%s::jsonb) AS g(endpoint_id text, ordering_key text)
                   WHERE (k.endpoint_id, k.ordering_key) = (g.endpoint_id, g.ordering_key)""", (jsonb(waiting),))
            gone = [(k["endpoint_id"], k["ordering_key"]) for k in keys
                    if (k["endpoint_id"], k["ordering_key"]) not in heads]
            await conn.execute(
                """DELETE FROM delivery.ordered_keys k
                   USING unnest(%s::text[], %s::text[]) AS g(endpoint_id, ordering_key)
                   WHERE (k.endpoint_id, k.ordering_key) = (g.endpoint_id, g.ordering_key)
                     AND NOT EXISTS (SELECT 1 FROM delivery.ordered_queue q
                                     WHERE (q.endpoint_id, q.ordering_key) = (k.endpoint_id, k.ordering_key))""",
                ([e for e, _ in gone], [k for _, k in gone]))
        return taken

    async def renew(self, tokens: Iterable[str]) -> None:
        """Keep the keys of heads still in work for another LEASE_S."""
        held = list(tokens)
        if held:
            async with self.pool.connection() as conn:
                await conn.execute(
                    """UPDATE delivery.ordered_keys SET claimed_until = now() + make_interval(secs => %s)
                       WHERE in_flight = ANY(%s)""", (LEASE_S, held))

    async def settle(self, head: Head, done: bool, delay_s: float = 0.0) -> None:
        """The head is settled (``done``: its row goes, the next may go at once), or is to be tried
        again in ``delay_s``, holding its key meanwhile."""
        await self._settles.submit((head, done, delay_s))

    async def _settle_all(self, items: Sequence[tuple[Head, bool, float]]) -> list[None]:
        given = sorted(({"endpoint_id": h.endpoint_id, "ordering_key": h.key, "token": h.token,
                         "delivery_id": h.delivery_id, "done": done, "delay": delay_s} for h, done, delay_s in items),
                       key=lambda r: (r["endpoint_id"], r["ordering_key"]))
        async with self.pool.connection() as conn, atomically(conn, 4):
            await conn.execute(
                """SELECT 1 FROM delivery.ordered_keys k
                   JOIN jsonb_to_recordset(%s::jsonb) AS g(endpoint_id text, ordering_key text)
                     ON (k.endpoint_id, k.ordering_key) = (g.endpoint_id, g.ordering_key)
                   ORDER BY k.endpoint_id, k.ordering_key FOR UPDATE OF k""", (jsonb(given),))
            # A settled delivery's row goes even if its lease ran out meanwhile: it is settled all the same.
            await conn.execute(
                "DELETE FROM delivery.ordered_queue WHERE delivery_id = ANY(%s)",
                ([g["delivery_id"] for g in given if g["done"]],))
            await conn.execute(
                """UPDATE delivery.ordered_keys k
                   SET in_flight = NULL, claimed_until = NULL, ready_at = now() + make_interval(secs => g.delay)
                   FROM jsonb_to_recordset(%s::jsonb) AS g(endpoint_id text, ordering_key text, token text,
                                                           delay float8)
                   WHERE (k.endpoint_id, k.ordering_key) = (g.endpoint_id, g.ordering_key) AND k.in_flight = g.token""",
                (jsonb(given),))
            await conn.execute(
                """DELETE FROM delivery.ordered_keys k
                   USING jsonb_to_recordset(%s::jsonb) AS g(endpoint_id text, ordering_key text)
                   WHERE (k.endpoint_id, k.ordering_key) = (g.endpoint_id, g.ordering_key) AND k.in_flight IS NULL
                     AND NOT EXISTS (SELECT 1 FROM delivery.ordered_queue q
                                     WHERE (q.endpoint_id, q.ordering_key) = (k.endpoint_id, k.ordering_key))""",
                (jsonb(given),))
        return [None] * len(items)


def _stored_at(stamp: str) -> float:
    """JetStream's RFC 3339 time (nanoseconds) as epoch seconds."""
    main, _, rest = stamp.rstrip("Z").partition(".")
    fraction = "".join(c for c in rest if c.isdigit())
    return datetime.fromisoformat(main + "+00:00").timestamp() + (float("0." + fraction) if fraction else 0.0)


class Upstream:
    """What JetStream still holds before the queue: unrouted events (EVENTS), unparked deliveries (DELIVERIES)."""

    def __init__(self, nc: NATS, timeout_s: float = 2.0) -> None:
        self.nc = nc
        self.timeout_s = timeout_s

    async def _api(self, subject: str, request: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = await self.nc.request(subject, orjson.dumps(request) if request else b"", timeout=self.timeout_s)
        return decode(reply.data)

    async def _first(self, stream: str, subject: str, after: int = 0) -> dict[str, Any] | None:
        """The first message of ``subject`` in ``stream`` past sequence ``after``; None if none."""
        answer = await self._api(f"$JS.API.STREAM.MSG.GET.{stream}", {"seq": after + 1, "next_by_subj": subject})
        if "error" in answer:
            if answer["error"].get("code") == 404:
                return None
            raise RuntimeError(f"{stream} message lookup failed: {answer['error']}")
        return answer["message"]

    async def marks(self, endpoints: Sequence[tuple[str, str]],
                    key_path: Callable[[str, str], Awaitable[KeyPath | None]]) -> Marks:
        """Read in this order: each tenant's oldest unrouted event, then how far DELIVERIES goes, then each
        endpoint's deliveries up to there not parked yet. An event routed before the first read has its
        deliveries published before the second, so they are in the third or already parked."""
        accepted_before: dict[str, float] = {}
        for tenant_id in sorted({t for t, _ in endpoints}):
            first = await self._first("EVENTS", f"events.{tenant_id}.>")
            if first is not None:
                accepted_before[tenant_id] = _stored_at(first["time"])
        last = (await self._api("$JS.API.STREAM.INFO.DELIVERIES"))["state"]["last_seq"]
        blocked: dict[str, frozenset[str] | None] = {}
        for tenant_id, endpoint_id in endpoints:
            path = await key_path(tenant_id, endpoint_id)
            if path is None:
                continue  # no longer ordered: what is parked drains, its new deliveries go as they come
            keys: set[str] = set()
            seq, read = 0, 0
            while True:
                found = await self._first("DELIVERIES", f"deliveries.{tenant_id}.{endpoint_id}", seq)
                if found is None or found["seq"] > last:
                    break
                seq, read = found["seq"], read + 1
                if read > SCAN_LIMIT:
                    keys = set()
                    blocked[endpoint_id] = None
                    break
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    message = DeliveryMessage.from_message(decode(base64.b64decode(found["data"])))
                    keys.add(ordering_key(path, message))
            if keys:
                blocked[endpoint_id] = frozenset(keys)
        return Marks(frozenset(e for _, e in endpoints), accepted_before, blocked)


class Sequencer:
    """Claims heads that may go and hands each to ``deliver``; one per process, all sharing the queue."""

    def __init__(self, queue: KeyQueue, upstream: Upstream, deliver: Callable[[DeliveryMessage], Awaitable[Decision]],
                 key_path: Callable[[str, str], Awaitable[KeyPath | None]], capacity: int = 256,
                 poll_s: float = 0.05) -> None:
        self.queue = queue
        self.upstream = upstream
        self.deliver = deliver
        self.key_path = key_path
        self.capacity = capacity
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._running: dict[asyncio.Task[None], Head] = {}

    def wake(self) -> None:
        """Something was parked or settled here: look for heads now rather than at the next poll."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        renewing = asyncio.create_task(self._renew(), name="ordered keys lease")
        delay = self.poll_s
        try:
            while not stopping.is_set():
                self._wake.clear()
                free = self.capacity - len(self._running)
                if free > 0:
                    try:
                        for head in await self._claim(free):
                            task = asyncio.create_task(self._send(head))
                            self._running[task] = head
                            task.add_done_callback(self._finished)
                        delay = self.poll_s
                    except Exception as exc:  # PostgreSQL or NATS trouble: look again later
                        logger.warning("ordered heads not claimed", extra={"error": f"{type(exc).__name__}: {exc}"})
                        delay = min(2 * delay, 2.0)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
        finally:
            if self._running:
                await asyncio.gather(*self._running, return_exceptions=True)
            renewing.cancel()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._wake.set()

    async def _claim(self, limit: int) -> list[Head]:
        endpoints = await self.queue.ready_endpoints()
        if not endpoints:
            return []
        marks = await self.upstream.marks(endpoints, self.key_path)
        return await self.queue.claim(limit, marks)

    async def _send(self, head: Head) -> None:
        try:
            message = DeliveryMessage.from_message(head.message)
        except (ValueError, TypeError) as exc:
            logger.error("unreadable parked delivery dropped", extra={"delivery_id": head.delivery_id,
                                                                        "error": str(exc)})
            decision = TERM
        else:
            try:
                decision = await self.deliver(message)
            except Exception as exc:
                logger.warning("ordered delivery step failed; will retry",
                               extra={"delivery_id": head.delivery_id, "error": f"{type(exc).__name__}: {exc}"})
                decision = Decision("nak", 2.0)
        done = decision.action in (ACK.action, TERM.action)
        try:
            await self.queue.settle(head, done, 0.0 if done else decision.delay_s or 0.0)
        except Exception as exc:  # its lease runs out; the head is claimed again and finds its state
            logger.warning("ordered delivery not settled in the queue",
                           extra={"delivery_id": head.delivery_id, "error": f"{type(exc).__name__}: {exc}"})

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE_S / 4)
            started = time.monotonic()
            try:
                await self.queue.renew(h.token for h in list(self._running.values()))
            except Exception as exc:
                logger.warning("ordered keys' leases not renewed", extra={"error": f"{type(exc).__name__}: {exc}",
                                                                          "after_s": time.monotonic() - started})
