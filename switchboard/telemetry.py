"""OpenTelemetry tracing, and trace context carried across HTTP, NATS and gRPC.

Each process installs one tracer provider named ``switchboard-<service>``.
Spans always have ids, so context propagates and logs carry trace ids; where
they go is ``SWITCHBOARD_OTEL_EXPORTER``:

- ``none`` (the default): nowhere, and they are not even recorded (no
  attributes, no timing: nearly free);
- ``console``: printed to standard output (``SWITCHBOARD_OTEL_CONSOLE=true``
  still means this);
- ``otlp``: OTLP/HTTP (protobuf) to ``SWITCHBOARD_OTLP_ENDPOINT`` or the
  standard ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``; chosen by itself when one
  of those is set. The standard ``OTEL_EXPORTER_OTLP_*`` headers, timeout and
  compression apply, and ``OTEL_BSP_*`` tune the batching.

One event's trace: the edge's server span (joining the sender's
``traceparent`` if it sent one) → ``traceparent`` in the ``EVENTS`` message
headers → the router's span → gRPC metadata to ai/delivery and headers of
the ``DELIVERIES`` message → the delivery worker's span. gRPC propagation is
done by the interceptors in :mod:`switchboard.rpc`. See docs/observability.md.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from opentelemetry import baggage, context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

__all__ = [
    "EXPORTERS",
    "setup_tracing",
    "tracer_provider",
    "span_exporter",
    "inject_trace_headers",
    "extract_trace_context",
    "extract_asgi_context",
    "current_trace_id",
    "tag_current_span",
    "tracer",
    "start_span",
]

EXPORTERS = ("none", "console", "otlp")
_TRACE_HEADERS = (b"traceparent", b"tracestate", b"baggage")

# False once setup_tracing installs a provider that records nothing (no exporter): spans are then
# only carriers of trace ids, made without the SDK's machinery (see start_span). Tests that install
# their own provider keep it True.
_spans_recorded = True
# The default propagators (W3C trace context and baggage), whose traceparent header is written
# directly where no span is recorded; any other choice (OTEL_PROPAGATORS, which opentelemetry
# reads itself) goes through opentelemetry's propagate.
_default_propagators = propagate.get_global_textmap().fields == {"traceparent", "tracestate", "baggage"}


def span_exporter(exporter: str, otlp_endpoint: str | None = None) -> SpanExporter | None:
    """The exporter named by ``SWITCHBOARD_OTEL_EXPORTER`` (None for ``none``)."""
    if exporter == "console":
        return ConsoleSpanExporter()
    if exporter == "otlp":
        # Imported only when used: it brings requests and the OTLP protobufs.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=_traces_url(otlp_endpoint) if otlp_endpoint else None)
    if exporter == "none":
        return None
    raise ValueError(f"unknown span exporter {exporter!r}; one of {', '.join(EXPORTERS)}")


def _traces_url(endpoint: str) -> str:
    """A collector's base URL (as ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes it) → its traces URL."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def setup_tracing(service: str, exporter: str = "none", otlp_endpoint: str | None = None) -> TracerProvider:
    """Install this process's tracer provider; spans are batched to the chosen exporter.

    The provider flushes and shuts down at interpreter exit, so a service that
    stops gracefully sends its last spans.
    """
    global _spans_recorded
    provider = tracer_provider(service, exporter, otlp_endpoint)
    trace.set_tracer_provider(provider)
    _spans_recorded = provider.sampler is not ALWAYS_OFF
    return provider


def tracer_provider(service: str, exporter: str = "none", otlp_endpoint: str | None = None) -> TracerProvider:
    """The tracer provider :func:`setup_tracing` installs (not installed: tests make their own)."""
    chosen = span_exporter(exporter, otlp_endpoint)
    # With nowhere to send them, spans are not recorded (they would cost the
    # hot path tens of microseconds each for nothing); they still carry trace
    # ids, so traceparent headers and log lines keep joining the processes.
    provider = TracerProvider(resource=Resource.create({"service.name": f"switchboard-{service}"}),
                              sampler=None if chosen is not None else ALWAYS_OFF)
    if chosen is not None:
        provider.add_span_processor(BatchSpanProcessor(chosen))
    return provider


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def start_span(tracer: trace.Tracer, name: str, *, parent: context.Context | None = None,
               kind: trace.SpanKind = trace.SpanKind.INTERNAL):
    """``tracer.start_as_current_span``, for the hot paths (a webhook, an event, a delivery).

    Where spans are not recorded (no exporter), the span only carries trace ids
    for propagation and log lines: it is made here, as the SDK would make it
    (the parent's trace id or a new one, a new span id, not sampled), at a
    fifth of the cost of the SDK's path.
    """
    if _spans_recorded:
        return tracer.start_as_current_span(name, context=parent, kind=kind)
    return _CarrierSpan(parent)


_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)  # a TraceFlags, as the SDK reads its properties


class _CarrierSpan:
    """A current span that records nothing: trace and span ids only (see start_span)."""

    __slots__ = ("_parent", "_token")

    def __init__(self, parent: context.Context | None) -> None:
        self._parent = parent

    def __enter__(self) -> trace.Span:
        above = trace.get_current_span(self._parent).get_span_context()
        trace_id = above.trace_id if above.is_valid else random.getrandbits(128) or 1
        span = trace.NonRecordingSpan(trace.SpanContext(trace_id, random.getrandbits(64) or 1, False,
                                                        _NOT_SAMPLED, above.trace_state))
        self._token = context.attach(trace.set_span_in_context(span, self._parent))
        return span

    def __exit__(self, *exc_info) -> None:
        context.detach(self._token)


def inject_trace_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add ``traceparent`` (and baggage) of the current span to message headers."""
    span_context = trace.get_current_span().get_span_context()
    # Outside any span there is nothing to carry; skip the propagators (hot path).
    if span_context.is_valid:
        if _default_propagators and not span_context.trace_state and not baggage.get_all():
            # What the W3C propagator writes, without its machinery.
            headers["traceparent"] = \
                f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{span_context.trace_flags:02x}"
        else:
            propagate.inject(headers)
    return headers


def extract_trace_context(headers: Mapping[str, str] | None) -> context.Context | None:
    """The trace context in message headers; None when they carry none (a new trace)."""
    if not headers or ("traceparent" not in headers and "baggage" not in headers):
        return None
    if _default_propagators and "baggage" not in headers and "tracestate" not in headers:
        parent = _parse_traceparent(headers["traceparent"])
        if parent is not None:
            return trace.set_span_in_context(trace.NonRecordingSpan(parent))
    return propagate.extract(dict(headers))


def _parse_traceparent(value: str) -> trace.SpanContext | None:
    """A version-00 ``traceparent`` as the W3C propagator reads it; None for anything else (the
    propagator then decides, invalid ones included)."""
    parts = value.split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id or not value.islower():
        return None
    return trace.SpanContext(trace_id, span_id, True, trace.TraceFlags(flags))


def extract_asgi_context(headers: Iterable[tuple[bytes, bytes]]) -> context.Context | None:
    """The caller's trace context from ASGI request headers; None when it sent none (a new trace)."""
    carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in _TRACE_HEADERS}
    return propagate.extract(carrier) if carrier else None


def current_trace_id() -> str | None:
    """The current span's trace id in hex (as OTLP back ends show it), or None outside a span."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def tag_current_span(**ids: str | None) -> None:
    """Tag the current span with platform ids (``event_id=...`` → ``switchboard.event_id``).

    Log lines written inside the span carry ``event_id``, ``tenant_id`` and
    ``delivery_id`` from these tags (switchboard/logs.py).
    """
    span = trace.get_current_span()
    if span.is_recording():
        for name, value in ids.items():
            if value is not None:
                span.set_attribute(f"switchboard.{name}", value)
