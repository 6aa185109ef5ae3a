"""NATS JetStream: the connection, the streams and consumers, and message encoding.

All streams and durable consumers are declared here, idempotently and with
explicit limits, so the whole message topology reads in one place.

| stream       | subjects            | written by                 | read by   | retention          |
| ------------ | ------------------- | -------------------------- | --------- | ------------------ |
| EVENTS       | events.<t>.<src>    | ingest, analytics (alerts) | router    | work queue         |
| DELIVERIES   | deliveries.<t>.<e>  | router                     | delivery  | work queue         |
| DEAD_LETTERS | dead.<t>.<e>        | delivery                   | operators | limits (age/bytes) |
| ATTEMPTS     | attempts.<t>[.kind] | delivery, router           | analytics | limits (age/bytes) |

EVENTS is a work queue: the router stores the events in PostgreSQL.

ATTEMPTS carries every report to analytics: ``attempts.<t>`` an attempt,
``attempts.<t>.routing`` what the router did with an event,
``attempts.<t>.notice`` a delivery held without an attempt (or skipped).

Work-queue streams discard *new* messages when full: a publisher then gets
an error (the edge answers 503) instead of an acknowledged event being
silently dropped.

Beside them, the KV bucket EVENT_DEDUP (stream KV_EVENT_DEDUP): the ids of
accepted events that carry a provider delivery id, each kept for
SWITCHBOARD_DEDUP_WINDOW, so a provider's retry after the streams' duplicate
window is still answered duplicate (services/ingest/publisher.py); and the KV
bucket SOURCES (stream KV_SOURCES): every source as PostgreSQL last committed
it, which every ingest process mirrors to find sources without PostgreSQL
(services/ingest/source_feed.py); and the KV bucket DELIVERY_CIRCUITS: each
endpoint's circuit as a delivery process last opened or closed it, watched by
every delivery process (services/delivery/limits.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Protocol
from collections.abc import Awaitable, Callable

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from switchboard import metrics
from switchboard.errors import Unavailable
from switchboard.outages import platform_error
from switchboard.settings import Settings

__all__ = [
    "StreamSpec",
    "ConsumerSpec",
    "stream_specs",
    "duplicate_window_s",
    "DEDUP_BUCKET",
    "dedup_bucket_config",
    "SOURCES_BUCKET",
    "sources_bucket_config",
    "CIRCUITS_BUCKET",
    "circuits_bucket_config",
    "BucketFollower",
    "follow_bucket",
    "CONSUMERS",
    "connect_nats",
    "ensure_streams",
    "ensure_consumer",
    "encode",
    "decode",
    "Decision",
    "ACK",
    "TERM",
    "retry_in",
    "retry_after",
    "Outage",
    "ACK_WAIT_S",
    "consume",
    "reader",
    "Reader",
    "StreamPublisher",
    "Publishing",
]

logger = logging.getLogger(__name__)


# On a delivery the router queues (not a retry, not a test event): no row of it is stored before
# its first attempt settles, so that attempt needs no state read (services/delivery/worker.py).
NEW_DELIVERY_HEADER = "Switchboard-New-Delivery"


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    retention: api.RetentionPolicy
    discard: api.DiscardPolicy
    max_bytes: int
    max_age_s: int
    duplicate_window_s: int
    max_msg_size: int
    replicas: int

    def config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            retention=self.retention,
            discard=self.discard,
            max_bytes=self.max_bytes,
            max_age=float(self.max_age_s),
            duplicate_window=float(self.duplicate_window_s),
            max_msg_size=self.max_msg_size,
            storage=api.StorageType.FILE,
            num_replicas=self.replicas,
        )


def duplicate_window_s(settings: Settings) -> int:
    """The streams' duplicate window: the configured one, never beyond their max age."""
    return min(settings.bus.duplicate_window_s, settings.bus.max_age_s)


def stream_specs(settings: Settings) -> list[StreamSpec]:
    common = dict(
        max_bytes=settings.bus.max_bytes,
        max_age_s=settings.bus.max_age_s,
        duplicate_window_s=duplicate_window_s(settings),
        max_msg_size=settings.max_message_bytes,
        replicas=settings.bus.replicas,
    )
    return [
        StreamSpec("EVENTS", ("events.>",), api.RetentionPolicy.WORK_QUEUE, api.DiscardPolicy.NEW, **common),
        StreamSpec("DELIVERIES", ("deliveries.>",), api.RetentionPolicy.WORK_QUEUE, api.DiscardPolicy.NEW, **common),
        StreamSpec("DEAD_LETTERS", ("dead.>",), api.RetentionPolicy.LIMITS, api.DiscardPolicy.OLD, **common),
        StreamSpec("ATTEMPTS", ("attempts.>",), api.RetentionPolicy.LIMITS, api.DiscardPolicy.OLD, **common),
    ]


def kv_bucket_config(bucket: str, settings: Settings, **limits: Any) -> api.StreamConfig:
    """The stream behind a KV bucket with one entry per key, file storage and the platform's replicas."""
    return api.StreamConfig(
        name=f"KV_{bucket}",
        subjects=[f"$KV.{bucket}.>"],
        retention=api.RetentionPolicy.LIMITS,
        max_msgs_per_subject=1,
        storage=api.StorageType.FILE,
        num_replicas=settings.bus.replicas,
        # What makes a stream a KV bucket (as nats-py's create_key_value declares it).
        allow_direct=True,
        allow_rollup_hdrs=True,
        deny_delete=True,
        **limits,
    )


DEDUP_BUCKET = "EVENT_DEDUP"


def dedup_bucket_config(settings: Settings) -> api.StreamConfig:
    """The stream behind the KV bucket EVENT_DEDUP: one entry per key, each expiring
    after the dedup window. When full the oldest ids go first (the period
    shortens; the router still refuses to route a stored event twice)."""
    return kv_bucket_config(
        DEDUP_BUCKET, settings,
        discard=api.DiscardPolicy.OLD,
        max_bytes=settings.bus.dedup_max_bytes,
        max_age=float(settings.bus.dedup_window_s),
        max_msg_size=1024,
        duplicate_window=min(120.0, float(settings.bus.dedup_window_s)),
    )


SOURCES_BUCKET = "SOURCES"


def sources_bucket_config(settings: Settings) -> api.StreamConfig:
    """The stream behind the KV bucket SOURCES: the latest record of each source (history 1),
    kept until the source is deleted. When full a write is refused (the edges then ask
    PostgreSQL for that source) rather than an older source dropped."""
    return kv_bucket_config(
        SOURCES_BUCKET, settings,
        discard=api.DiscardPolicy.NEW,
        max_bytes=settings.bus.max_bytes,
        # A record holds at most what the API accepts for one source.
        max_msg_size=settings.max_message_bytes,
        duplicate_window=120.0,
    )


CIRCUITS_BUCKET = "DELIVERY_CIRCUITS"


def circuits_bucket_config(settings: Settings) -> api.StreamConfig:
    """The stream behind the KV bucket DELIVERY_CIRCUITS: each endpoint's circuit as a delivery
    process last opened or closed it, watched by every delivery process
    (services/delivery/limits.py). A record is gone after a day (an open circuit is written
    again at each failed probe); when full the oldest go first."""
    return kv_bucket_config(
        CIRCUITS_BUCKET, settings,
        discard=api.DiscardPolicy.OLD,
        # A record is ~100 bytes: room for hundreds of thousands of endpoints.
        max_bytes=64 * 1024 * 1024,
        max_age=86_400.0,
        max_msg_size=1024,
        duplicate_window=120.0,
    )


LEASES_BUCKET = "LEASES"
# How long leased work (switchboard/leases.py) goes without its holder before another process takes it over.
LEASE_TTL_S = 10.0


def leases_bucket_config(settings: Settings, ttl_s: float = LEASE_TTL_S) -> api.StreamConfig:
    """The stream behind the KV bucket LEASES: one entry per leased work (switchboard/leases.py),
    forgotten ``ttl_s`` after its holder last wrote it."""
    return kv_bucket_config(LEASES_BUCKET, settings, discard=api.DiscardPolicy.OLD, max_bytes=8 * 1024 * 1024,
                            max_age=ttl_s, max_msg_size=1024, duplicate_window=min(1.0, ttl_s))


RATE_LIMITS_BUCKET = "RATE_LIMITS"


def rate_limits_bucket_config(settings: Settings) -> api.StreamConfig:
    """The stream behind the KV bucket RATE_LIMITS: one entry per shared token bucket in use
    (switchboard/shared_buckets.py), forgotten an hour after its last write (by then full again)."""
    return kv_bucket_config(RATE_LIMITS_BUCKET, settings, discard=api.DiscardPolicy.OLD,
                            max_bytes=256 * 1024 * 1024, max_age=3600.0, max_msg_size=1024, duplicate_window=1.0)


# A message not acked (nor marked in progress) within this is redelivered: the
# in-flight messages of a process that died come back this soon. Work that
# lasts longer (a slow receiver, an AI call) is kept by in-progress
# heartbeats every ACK_WAIT_S / 3 (see consume()).
ACK_WAIT_S = 4.0


@dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    durable: str
    ack_wait_s: float = ACK_WAIT_S
    max_ack_pending: int = 1000

    def config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=self.ack_wait_s,
            # Never give up on a message at the broker: the worker decides when
            # a delivery is dead, from attempts recorded in PostgreSQL.
            max_deliver=-1,
            max_ack_pending=self.max_ack_pending,
        )


# Deliveries that wait in the stream (retrying after a failure, or held by their endpoint's circuit,
# rate limit or in-flight cap) are messages delivered and not acknowledged: at 1,000, a down endpoint's
# backlog was all the consumer could have out, and every other endpoint waited for it. NATS keeps a
# few dozen bytes per such message; past this many, new deliveries wait (the ack_pending gauge shows it).
DELIVERIES_MAX_ACK_PENDING = 100_000

CONSUMERS = {
    "router": ConsumerSpec("EVENTS", "router"),
    "delivery": ConsumerSpec("DELIVERIES", "delivery", max_ack_pending=DELIVERIES_MAX_ACK_PENDING),
    "analytics": ConsumerSpec("ATTEMPTS", "analytics"),
}


async def connect_nats(url: str, name: str) -> NATS:
    """Connect, failing fast at start-up, reconnecting for ever afterwards. ``url`` may name several
    servers of a cluster, comma-separated: any of them will do, and the client fails over to the others
    (and to those the cluster tells it of)."""

    async def on_error(exc: Exception) -> None:
        logger.warning("nats error", extra={"error": str(exc)})

    async def on_disconnect() -> None:
        logger.warning("nats disconnected")

    async def on_reconnect() -> None:
        logger.info("nats reconnected")

    try:
        return await nats.connect(
            servers=[server.strip() for server in url.split(",") if server.strip()],
            name=name,
            connect_timeout=3,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
    except Exception as exc:  # nats raises several unrelated types here
        raise Unavailable(f"cannot connect to NATS at {_redact_url(url)}: {exc or type(exc).__name__}") from None


def _redact_url(url: str) -> str:
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url


class BucketFollower(Protocol):
    """What :func:`follow_bucket` tells as it reads a KV bucket."""

    def loaded(self, entries: list[KeyValue.Entry]) -> None:
        """The whole bucket, read again from its start: each key's latest entry (deletions included)."""

    def changed(self, entry: KeyValue.Entry) -> None:
        """One change after the bucket was loaded."""

    def lost(self) -> None:
        """The watch ended (NATS failed or came back): what was loaded may be stale until the next load."""


# How often an idle watch looks at its connection, and how long it waits between its retries.
_WATCH_IDLE_CHECK_S = 0.5
_WATCH_RETRY_FIRST_S = 0.5
_WATCH_RETRY_CAP_S = 5.0


async def follow_bucket(nc: NATS, bucket: str, follower: BucketFollower, stopping: asyncio.Event, *,
                        snapshot_timeout_s: float = 10.0) -> None:
    """Keep ``follower`` told of a KV bucket until ``stopping`` is set: the whole bucket, then each change.

    When NATS comes back after a disconnection the whole bucket is read again
    (the server may have been replaced). Failures are retried with a growing
    delay and logged once per outage, never raised.
    """
    delay, failing = _WATCH_RETRY_FIRST_S, False
    while not stopping.is_set():
        try:
            await _follow_once(nc, bucket, follower, stopping, snapshot_timeout_s)
            delay, failing = _WATCH_RETRY_FIRST_S, False
            continue
        except Exception as exc:
            log = logger.debug if failing else logger.warning
            log("bucket watch failed; retrying", extra={"bucket": bucket, "error": f"{type(exc).__name__}: {exc}"})
            failing = True
        finally:
            follower.lost()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)
        delay = min(_WATCH_RETRY_CAP_S, delay * 2)


async def _follow_once(nc: NATS, bucket: str, follower: BucketFollower, stopping: asyncio.Event,
                       snapshot_timeout_s: float) -> None:
    reconnects = nc.stats["reconnects"]
    if not nc.is_connected:
        raise Unavailable("NATS is not connected")
    watch = await (await nc.jetstream().key_value(bucket)).watchall()
    try:
        entries: list[KeyValue.Entry] = []
        while True:
            try:
                entry = await watch.updates(timeout=snapshot_timeout_s)
            except nats.errors.TimeoutError:
                raise Unavailable(f"the {bucket} bucket was not read in time") from None
            if entry is None:  # the whole bucket has been read
                break
            entries.append(entry)
        follower.loaded(entries)
        while not stopping.is_set():
            if nc.stats["reconnects"] != reconnects:
                logger.info("nats reconnected; reading the bucket again", extra={"bucket": bucket})
                return
            try:
                entry = await watch.updates(timeout=_WATCH_IDLE_CHECK_S)
            except nats.errors.TimeoutError:
                continue
            if entry is not None:
                follower.changed(entry)
    finally:
        with contextlib.suppress(Exception):
            await watch.stop()


# Creating a stream of 3 replicas waits for its own election on a cluster: longer than a publish.
MANAGE_TIMEOUT_S = 30.0


async def ensure_streams(js: JetStreamContext, settings: Settings) -> None:
    """Create every stream, and the KV buckets, or update it where its configuration differs from the
    declared one (every process of every service does this as it starts: on a cluster each update is a
    round of the meta leader's, so one that changes nothing is not made)."""
    buckets = [dedup_bucket_config(settings), sources_bucket_config(settings), circuits_bucket_config(settings),
               leases_bucket_config(settings), rate_limits_bucket_config(settings)]
    for config in [spec.config() for spec in stream_specs(settings)] + buckets:
        assert config.name is not None  # every stream and bucket here is declared with its name
        try:
            info = await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            logger.info("stream created", extra={"stream": config.name})
        else:
            if _differs(info.config, config):
                await js.update_stream(config)
                logger.info("stream updated", extra={"stream": config.name})


def _differs(current: api.StreamConfig, declared: api.StreamConfig) -> bool:
    """Whether the server's configuration of a stream differs from the declared one in what it declares."""
    now = current.as_dict()
    return any(now.get(key) != value for key, value in declared.as_dict().items())


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    await js.add_consumer(spec.stream, spec.config())


def encode(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message)


def decode(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"message is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("message is not a JSON object")
    return value


class Publishing(Protocol):
    """What publishes to JetStream and awaits the ack: a :class:`StreamPublisher` or nats-py's JetStreamContext."""

    async def publish(self, subject: str, payload: bytes, *, timeout: float,
                      headers: dict[str, str] | None = None) -> api.PubAck: ...


class StreamPublisher:
    """Publish to JetStream and await the stream's ack: ``js.publish`` for the hot paths.

    The same exchange as nats-py's ``JetStreamContext.publish`` (a request
    whose reply comes to one wildcard inbox subscription), without what it
    costs per call on top: a NUID and random token per request, an
    ``asyncio.wait_for`` per await, the stdlib JSON parser and a dataclass
    built from the answer. At thousands of events per second those were a
    good part of the edge's CPU per webhook. Raises what ``js.publish``
    raises: ``nats.errors.TimeoutError``, ``NoStreamResponseError`` when no
    stream takes the subject, the stream's ``APIError`` (full, wrong
    sequence), and the connection's errors.
    """

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._pending: dict[bytes, asyncio.Future[Msg]] = {}
        self._next = 0
        self._prefix: str | None = None
        self._started: asyncio.Future[None] | None = None

    async def _start(self) -> None:
        # One subscription for every ack of this publisher; nats-py restores it after a reconnect.
        self._prefix = self.nc.new_inbox() + "."
        await self.nc.subscribe(self._prefix + "*", cb=self._answered)

    async def _answered(self, msg: Msg) -> None:
        future = self._pending.pop(msg.subject.rpartition(".")[2].encode(), None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def publish(self, subject: str, payload: bytes, *, timeout: float,
                      headers: dict[str, str] | None = None) -> api.PubAck:
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        if not self._started.done():
            await asyncio.shield(self._started)
        self._next += 1
        token = b"%x" % self._next
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._pending[token] = future
        expire = loop.call_later(timeout, _time_out, future)
        assert self._prefix is not None  # set by _start, awaited above
        try:
            await self.nc.publish(subject, payload, reply=self._prefix + token.decode(), headers=headers)
            answer = await future
        finally:
            expire.cancel()
            self._pending.pop(token, None)
        if not answer.data and answer.headers and answer.headers.get("Status") == "503":
            raise nats.js.errors.NoStreamResponseError
        ack = orjson.loads(answer.data)
        if "error" in ack:
            raise nats.js.errors.APIError.from_error(ack["error"])
        return api.PubAck(stream=ack["stream"], seq=ack["seq"], domain=ack.get("domain"),
                          duplicate=ack.get("duplicate"))


def _time_out(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(nats.errors.TimeoutError())


@dataclass(frozen=True)
class Decision:
    """What a consumer handler decided for one message; tested without NATS."""

    action: str  # "ack" | "nak" | "term"
    delay_s: float | None = None
    # NATS or PostgreSQL was down: the consumer pauses and decides the delay (see Outage).
    outage: bool = False


ACK = Decision("ack")
TERM = Decision("term")


def retry_in(delay_s: float) -> Decision:
    return Decision("nak", delay_s)


def retry_after(exc: BaseException, delay_s: float) -> Decision:
    """Try again in ``delay_s``; or, when ``exc`` means a dependency is down, when the consumer's backoff says."""
    if isinstance(platform_error(exc), Unavailable):
        return Decision("nak", delay_s, outage=True)
    return retry_in(delay_s)


Handler = Callable[[Msg], Awaitable[Decision]]
# What a message holds, read from it: ValueError (or TypeError) when it holds nothing readable.
Reader = Callable[[Msg], Any]


def reader(message_class: Any) -> Reader:
    """Reads a JSON message of ``message_class`` (switchboard/events.py) with its ``from_message``."""
    return lambda msg: message_class.from_message(decode(msg.data))


class Outage:
    """A consumer's pause while a dependency is down: no hot loop of failing
    statements, no redelivery storm.

    Each message that fails for an outage is given back with a delay that grows
    with the outage's age (``first_s`` up to ``cap_s``, with jitter, so
    messages do not all return at once), and no new message is fetched until
    that delay has passed. The first success ends the outage.
    """

    def __init__(self, name: str, first_s: float = 0.5, cap_s: float = 5.0) -> None:
        self.name = name
        self.first_s = first_s
        self.cap_s = cap_s
        self.since: float | None = None
        self.paused_until = 0.0

    def failed(self) -> float:
        now = time.monotonic()
        if self.since is None:
            self.since = now
            logger.warning("a dependency is down; consumer pausing", extra={"consumer": self.name})
        delay = min(self.cap_s, max(self.first_s, now - self.since)) * random.uniform(0.8, 1.2)
        self.paused_until = max(self.paused_until, now + delay)
        return delay

    def succeeded(self) -> None:
        if self.since is not None:
            logger.warning("consumer resumed", extra={"consumer": self.name,
                                                      "paused_for_s": round(time.monotonic() - self.since, 1)})
            self.since = None
            self.paused_until = 0.0

    def pause_s(self) -> float:
        return max(0.0, self.paused_until - time.monotonic())


async def _settle(msg: Msg, decision: Decision) -> None:
    if decision.action == "ack":
        await msg.ack()
    elif decision.action == "nak":
        await msg.nak(delay=decision.delay_s)
    else:
        await msg.term()


async def _read_then_handle(handler: Callable[..., Awaitable[Decision]], read: Reader, msg: Msg,
                            stream: str) -> Decision:
    try:
        message = read(msg)
    except (ValueError, TypeError) as exc:  # no retry will make it readable
        logger.error("unreadable message dropped", extra={"stream": stream, "subject": msg.subject, "error": str(exc)})
        return TERM
    return await handler(message, msg)


async def _keep_in_progress(in_flight: dict[asyncio.Task, tuple[Msg, float]], interval_s: float,
                            stream: str) -> None:
    """Heartbeats: tell JetStream that messages in work for a while are still in progress,
    so a short ack wait redelivers only the messages of a process that died."""
    while True:
        await asyncio.sleep(interval_s)
        older_than = time.monotonic() - interval_s
        for msg, started in list(in_flight.values()):
            if started <= older_than:
                try:
                    await msg.in_progress()
                except Exception as exc:  # NATS down: the message may come back; its handler's work is idempotent
                    logger.debug("in-progress ack not sent", extra={"stream": stream, "error": str(exc)})


# Pull requests stay open this long, and the server says it is alive (an idle
# heartbeat) this often while they wait: an idle consumer costs one request per
# PULL_EXPIRES_S and a heartbeat per PULL_HEARTBEAT_S, not a fetch per half second.
PULL_EXPIRES_S = 30.0
PULL_HEARTBEAT_S = 5.0


class PullCredit:
    """How many messages a consumer has asked for and not received yet.

    Topped up as slots free, so messages flow in as they are published,
    without a request (a round trip) per message or per batch.
    """

    def __init__(self) -> None:
        self.requested = 0
        self.last_heard = time.monotonic()

    def received(self) -> None:
        self.requested = max(0, self.requested - 1)
        self.last_heard = time.monotonic()

    def ended(self, msg: Msg) -> None:
        """A request expired or was cut short: what it still owed will not come."""
        owed = (msg.headers or {}).get("Nats-Pending-Messages")
        self.requested = max(0, self.requested - int(owed)) if owed and owed.isdigit() else 0
        self.last_heard = time.monotonic()

    def lost(self) -> bool:
        """Nothing heard for two heartbeats while asking: the server forgot the requests (it restarted)."""
        return self.requested > 0 and time.monotonic() - self.last_heard > 2 * PULL_HEARTBEAT_S + 1


async def consume(
    nc: NATS,
    spec: ConsumerSpec,
    handler: Callable[..., Awaitable[Decision]],
    *,
    concurrency: int,
    stopping: asyncio.Event,
    batch: int = 64,
    read: Reader | None = None,
) -> None:
    """Handle a durable consumer's messages as they come, up to ``concurrency`` at once.

    With ``read``, the handler is called with what it read and the message;
    a message it cannot read is dropped (terminated: no retry will make it
    readable) and logged. Without, with the message alone.

    Pull requests (each for up to ``batch`` messages, open for PULL_EXPIRES_S)
    keep what was asked for plus what is in work within ``concurrency``; a
    fetched message is handled at once, so none waits out its ack_wait here.
    Returns once ``stopping`` is set and every message in flight is settled. A
    handler that raises gets its message redelivered after a short delay; one
    that fails because NATS or PostgreSQL is down pauses the consumer (Outage).
    """
    await ensure_consumer(nc.jetstream(timeout=MANAGE_TIMEOUT_S), spec)
    next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}"
    inbox = nc.new_inbox()
    credit = PullCredit()
    # Task -> (its message, when it started), for the heartbeats.
    in_flight: dict[asyncio.Task, tuple[Msg, float]] = {}
    outage = Outage(spec.durable)
    # Ask again once this many slots are free: not a request per message.
    refill = max(1, min(batch, concurrency // 4))
    wake = asyncio.Event()

    async def handle(msg: Msg) -> None:
        started = time.perf_counter()
        try:
            try:
                decision = await (handler(msg) if read is None else _read_then_handle(handler, read, msg, spec.stream))
            except Exception as exc:
                decision = retry_after(exc, 2.0)
                if not decision.outage:
                    logger.exception("handler failed; message will be redelivered", extra={"stream": spec.stream})
            if decision.outage:
                decision = retry_in(outage.failed())
            else:
                outage.succeeded()
            metrics.record_message(spec.durable, decision.action, time.perf_counter() - started)
            await _settle(msg, decision)
        except Exception:
            # Settling failed (NATS down): the message is redelivered after ack_wait.
            logger.warning("could not settle message", extra={"stream": spec.stream}, exc_info=True)

    def finished(task: asyncio.Task) -> None:
        in_flight.pop(task, None)
        if concurrency - len(in_flight) - credit.requested >= refill:
            wake.set()

    async def arrived(msg: Msg) -> None:
        status = (msg.headers or {}).get("Status") if not msg.data else None
        if status is not None:
            if status == "100":  # an idle heartbeat (or flow control): the requests are alive
                credit.last_heard = time.monotonic()
            else:  # 408 expired, 409 cut short (a leader change, the consumer deleted, ...)
                credit.ended(msg)
                wake.set()
            return
        credit.received()
        pause = outage.pause_s()
        if pause > 0 or stopping.is_set():
            # Arrived on a request made before the pause (or the stop): given back, not handled.
            with contextlib.suppress(Exception):
                await msg.nak(delay=pause or None)
            return
        task = asyncio.create_task(handle(msg))
        in_flight[task] = (msg, time.monotonic())
        task.add_done_callback(finished)

    sub = await nc.subscribe(inbox, cb=arrived)
    heartbeats = asyncio.create_task(_keep_in_progress(in_flight, spec.ack_wait_s / 3, spec.stream),
                                     name=f"{spec.durable} in-progress heartbeats")
    reconnects = nc.stats["reconnects"]
    request = {"expires": int(PULL_EXPIRES_S * 1e9), "idle_heartbeat": int(PULL_HEARTBEAT_S * 1e9)}
    try:
        while not stopping.is_set():
            if nc.stats["reconnects"] != reconnects or credit.lost():
                # A new connection (perhaps a restarted server) knows none of our requests.
                reconnects = nc.stats["reconnects"]
                credit.requested = 0
            pause = outage.pause_s()
            wanted = min(batch, concurrency - len(in_flight) - credit.requested)
            if pause == 0 and wanted >= refill and nc.is_connected:
                try:
                    await nc.publish(next_subject, encode({**request, "batch": wanted}), reply=inbox)
                    credit.requested += wanted
                    credit.last_heard = time.monotonic()
                    # Ask for the rest of the room before waiting: handlers that hold their messages
                    # (analytics, filling a batch) must not wait for one to finish to get more.
                    continue
                except Exception as exc:
                    logger.warning("pull request not sent", extra={"stream": spec.stream, "error": str(exc)})
            wake.clear()
            # Woken by free slots or a request's end; else look again (the stop, reconnects, pauses) in a second.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), max(pause, 1.0) if pause else 1.0)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        heartbeats.cancel()

