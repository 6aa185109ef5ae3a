"""OpenTelemetry tracing, and trace context carried in NATS headers.

Each process installs one tracer provider named after its service. Spans go to
the console exporter when ``SWITCHBOARD_OTEL_CONSOLE`` is on; otherwise they are
created (so context propagates across services) but not exported. An operator
adds an OTLP exporter by installing ``opentelemetry-exporter-otlp`` and setting
the standard ``OTEL_*`` variables (see docs/operations.md).
"""

from __future__ import annotations

from typing import Mapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

__all__ = ["setup_tracing", "inject_trace_headers", "extract_trace_context", "tracer"]


def setup_tracing(service: str, console: bool = False) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": f"switchboard-{service}"}))
    if console:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_trace_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add ``traceparent`` (and baggage) of the current span to message headers."""
    # Outside any span there is nothing to carry; skip the propagators (hot path).
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(headers)
    return headers


def extract_trace_context(headers: Mapping[str, str] | None) -> context.Context:
    return propagate.extract(dict(headers or {}))
