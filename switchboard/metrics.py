"""Every Prometheus metric of the platform, declared in one place.

Each process exposes them at ``/metrics``: every service on its own metrics
port (``SWITCHBOARD_<SERVICE>_METRICS_PORT``), the edge on its HTTP port too.
Labels are bounded: route templates, gRPC methods, plugin names, outcomes,
states. Event, tenant, endpoint and delivery ids are never labels (they go
into logs and spans instead). docs/observability.md lists every metric.

Code records through the small ``record_*`` helpers below rather than the
metric objects, so label names and their allowed values stay in this module.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from typing import Any, Protocol
from collections.abc import Iterable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

__all__ = [
    "HTTP_REQUESTS",
    "HTTP_DURATION",
    "GRPC_SERVER_HANDLED",
    "GRPC_SERVER_DURATION",
    "GRPC_CLIENT_HANDLED",
    "GRPC_CLIENT_DURATION",
    "CONSUMER_PENDING",
    "CONSUMER_ACK_PENDING",
    "CONSUMER_REDELIVERED",
    "MESSAGES_HANDLED",
    "MESSAGE_DURATION",
    "DELIVERY_ATTEMPTS",
    "DELIVERY_DURATION",
    "DELIVERY_HOLDS",
    "AI_CALLS",
    "AI_DURATION",
    "AI_TOKENS",
    "CIRCUIT_STATES",
    "record_http",
    "DEDUP_FAILURES",
    "record_dedup_failure",
    "record_grpc_server",
    "record_grpc_client",
    "record_message",
    "record_delivery_attempt",
    "record_delivery_hold",
    "record_ai_call",
    "watch_circuits",
    "watch_consumer_lag",
    "MetricsServer",
    "render",
]

logger = logging.getLogger(__name__)

# Seconds. Webhook intake and gRPC calls take milliseconds; deliveries and AI
# calls up to their timeouts (10 s and 20 s by default).
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)

# -- the HTTP edge ------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "switchboard_http_requests", "Requests the HTTP edge answered.", ["route", "method", "status"])
HTTP_DURATION = Histogram(
    "switchboard_http_request_duration_seconds", "Time the HTTP edge took to answer a request.",
    ["route", "method"], buckets=_FAST)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# (route, method, status) → its two series: labels() takes a lock and builds
# a key on every call, too much for every webhook. Bounded like the labels.
_http_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def record_http(route: str, method: str, status: int, seconds: float) -> None:
    """One answered request; ``route`` is the route's template (``/in/{source_id}``) or ``unmatched``."""
    method = method if method in _METHODS else "other"
    series = _http_series.get((route, method, status))
    if series is None:
        series = _http_series[(route, method, status)] = (
            HTTP_REQUESTS.labels(route, method, str(status)), HTTP_DURATION.labels(route, method))
    series[0].inc()
    series[1].observe(seconds)


DEDUP_FAILURES = Counter(
    "switchboard_dedup_failures",
    "Look-ups or records in the edge's dedup bucket (EVENT_DEDUP) that failed; the event was accepted regardless.",
    ["operation"])


def record_dedup_failure(operation: str) -> None:
    """A failed dedup ``operation``: ``lookup`` (the event was published anyway) or ``record``."""
    _labelled(DEDUP_FAILURES, operation).inc()


# -- gRPC ---------------------------------------------------------------------------

GRPC_SERVER_HANDLED = Counter(
    "switchboard_grpc_server_handled", "gRPC calls this process served, by status code.",
    ["service", "method", "code"])
GRPC_SERVER_DURATION = Histogram(
    "switchboard_grpc_server_handling_seconds", "Time this process took to serve a gRPC call.",
    ["service", "method"], buckets=_FAST)
GRPC_CLIENT_HANDLED = Counter(
    "switchboard_grpc_client_handled", "gRPC calls this process made to other services, by status code.",
    ["service", "method", "code"])
GRPC_CLIENT_DURATION = Histogram(
    "switchboard_grpc_client_handling_seconds", "Time a gRPC call to another service took, as the caller saw it.",
    ["service", "method"], buckets=_FAST)


def _split_method(full_method: str) -> tuple[str, str]:
    """``/switchboard.v1.AuthService/VerifyApiKey`` → (``switchboard.v1.AuthService``, ``VerifyApiKey``)."""
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


def record_grpc_server(full_method: str, code: str, seconds: float) -> None:
    service, method = _split_method(full_method)
    GRPC_SERVER_HANDLED.labels(service, method, code).inc()
    GRPC_SERVER_DURATION.labels(service, method).observe(seconds)


def record_grpc_client(full_method: str, code: str, seconds: float) -> None:
    service, method = _split_method(full_method)
    GRPC_CLIENT_HANDLED.labels(service, method, code).inc()
    GRPC_CLIENT_DURATION.labels(service, method).observe(seconds)


# -- JetStream ----------------------------------------------------------------------

CONSUMER_PENDING = Gauge(
    "switchboard_jetstream_consumer_pending", "Messages in the stream not yet delivered to the consumer (lag).",
    ["stream", "consumer"])
CONSUMER_ACK_PENDING = Gauge(
    "switchboard_jetstream_consumer_ack_pending", "Messages delivered to the consumer and not yet acknowledged.",
    ["stream", "consumer"])
CONSUMER_REDELIVERED = Gauge(
    "switchboard_jetstream_consumer_redelivered", "Messages delivered more than once and not yet acknowledged.",
    ["stream", "consumer"])
MESSAGES_HANDLED = Counter(
    "switchboard_messages_handled", "Bus messages a consumer handled, by the decision taken (ack, nak, term).",
    ["consumer", "decision"])
MESSAGE_DURATION = Histogram(
    "switchboard_message_handling_seconds", "Time a consumer took to decide about one message.",
    ["consumer"], buckets=_SLOW)


@functools.cache
def _labelled(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, looked up once: hot paths count thousands of times a second."""
    return metric.labels(*values)


def record_message(consumer: str, decision: str, seconds: float) -> None:
    """One message handled by the durable consumer ``consumer``; ``decision`` is ack, nak or term."""
    _labelled(MESSAGES_HANDLED, consumer, decision).inc()
    _labelled(MESSAGE_DURATION, consumer).observe(seconds)


class _ConsumerSpec(Protocol):
    # Read-only: a messaging.ConsumerSpec is frozen.
    @property
    def stream(self) -> str: ...
    @property
    def durable(self) -> str: ...


async def watch_consumer_lag(js, consumers: Sequence[_ConsumerSpec], interval_s: float,
                             stopping: asyncio.Event) -> None:
    """Every ``interval_s``, read each consumer's pending counts into the lag gauges, until ``stopping``.

    Lag is the broker's view, shared by every process of a service, so any one
    of them reports it. A consumer not created yet, or NATS away, is skipped
    until the next round: metrics never stop a service.
    """
    while not stopping.is_set():
        for spec in consumers:
            try:
                info = await js.consumer_info(spec.stream, spec.durable)
            except Exception as exc:  # not found yet, timeouts, a reconnecting client
                logger.debug("consumer info unavailable", extra={"consumer": spec.durable, "error": str(exc)})
                continue
            CONSUMER_PENDING.labels(spec.stream, spec.durable).set(info.num_pending or 0)
            CONSUMER_ACK_PENDING.labels(spec.stream, spec.durable).set(info.num_ack_pending or 0)
            CONSUMER_REDELIVERED.labels(spec.stream, spec.durable).set(info.num_redelivered or 0)
        try:
            await asyncio.wait_for(stopping.wait(), interval_s)
        except TimeoutError:
            pass


# -- deliveries ---------------------------------------------------------------------

DELIVERY_ATTEMPTS = Counter(
    "switchboard_delivery_attempts",
    "Delivery attempts, by destination plugin and outcome (succeeded, retrying, failed).",
    ["destination", "outcome"])
DELIVERY_DURATION = Histogram(
    "switchboard_delivery_attempt_duration_seconds", "Time one delivery attempt took, sending included.",
    ["destination"], buckets=_SLOW)

DELIVERY_HOLDS = Counter(
    "switchboard_delivery_holds",
    "Deliveries given back to the stream without an attempt, by why (rate_limited, in_flight_cap, circuit_open): "
    "each comes back about its turn.", ["reason"])


def record_delivery_attempt(destination: str, outcome: str, seconds: float) -> None:
    """One recorded attempt; ``destination`` is the plugin name (webhook, slack, ...)."""
    _labelled(DELIVERY_ATTEMPTS, destination, outcome).inc()
    _labelled(DELIVERY_DURATION, destination).observe(seconds)


def record_delivery_hold(reason: str) -> None:
    """A delivery held for ``reason`` (a hold reason), given back to the stream without an attempt."""
    _labelled(DELIVERY_HOLDS, reason).inc()


# -- AI -----------------------------------------------------------------------------

AI_CALLS = Counter(
    "switchboard_ai_calls",
    "Answers asked of AI providers, by outcome (ok, invalid, error, timeout, cached).",
    ["provider", "task", "outcome"])
AI_DURATION = Histogram(
    "switchboard_ai_call_duration_seconds", "Time an AI provider took to answer (cached answers excluded).",
    ["provider", "task"], buckets=_SLOW)
AI_TOKENS = Counter(
    "switchboard_ai_tokens", "Tokens AI providers reported, by kind (input, output).", ["provider", "kind"])


def record_ai_call(provider: str, task: str, outcome: str, seconds: float | None = None,
                   input_tokens: int = 0, output_tokens: int = 0) -> None:
    """One answer asked of ``provider`` for ``task`` (classify, extract, reply)."""
    AI_CALLS.labels(provider, task, outcome).inc()
    if seconds is not None:
        AI_DURATION.labels(provider, task).observe(seconds)
    if input_tokens:
        AI_TOKENS.labels(provider, "input").inc(input_tokens)
    if output_tokens:
        AI_TOKENS.labels(provider, "output").inc(output_tokens)


# -- circuit breakers ---------------------------------------------------------------


class _CircuitStates(Collector):
    """``switchboard_circuits{kind, state}``: how many circuits are in each state, read at scrape time.

    Counts only: which endpoint (or provider) a circuit belongs to is not a
    label, so the series stay bounded whatever the number of endpoints.
    """

    NAME = "switchboard_circuits"
    HELP = "Circuit breakers of this process by state (closed, open, half_open); kind is delivery or ai."

    def __init__(self) -> None:
        self._watched: dict[str, object] = {}
        self._lock = threading.Lock()

    def watch(self, kind: str, breakers: object) -> None:
        with self._lock:
            self._watched[kind] = breakers

    def describe(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=["kind", "state"])

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["kind", "state"])
        with self._lock:
            watched = list(self._watched.items())
        for kind, breakers in watched:
            try:
                states = breakers.states()  # type: ignore[attr-defined]
            except Exception:  # a scrape must never fail because of one source
                logger.debug("circuit states unavailable", extra={"kind": kind}, exc_info=True)
                continue
            for state, count in states.items():
                family.add_metric([kind, state], count)
        yield family


CIRCUIT_STATES = _CircuitStates()
REGISTRY.register(CIRCUIT_STATES)


def watch_circuits(kind: str, breakers: object) -> None:
    """Report ``breakers`` (a :class:`switchboard.circuit.CircuitBreakers`) as ``kind``; the last one watched wins."""
    CIRCUIT_STATES.watch(kind, breakers)


# -- exposition ---------------------------------------------------------------------


def render() -> tuple[bytes, str]:
    """The text exposition of every metric of this process, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class MetricsServer:
    """``/metrics`` on its own port, served by prometheus_client's HTTP server in a daemon thread.

    A thread rather than the event loop: a scrape is answered even while the
    loop is busy or stuck (when metrics matter most), and rendering never
    delays a message.
    """

    def __init__(self, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, addr=host)
        self.host = host
        self.port: int = self._server.server_address[1]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)
