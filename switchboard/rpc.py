"""gRPC helpers: the server every service runs, and typed clients between services.

A servicer is a thin translation layer: decorate it with :func:`servicer` and
any :class:`~switchboard.errors.SwitchboardError` raised by the domain becomes
the matching status code (one table, :data:`GRPC_STATUS`)
with ``google.rpc.Status`` details: ``ErrorInfo`` (the stable code as its
reason, a rate limit's headers as its metadata), ``BadRequest`` (the field at
fault) and ``RetryInfo`` (when to try again). Clients made by
:class:`ServiceClients` give every call the configured deadline, and
:func:`call` rebuilds the same exception, code included, from those details.

Both ends are instrumented by the interceptors here: the client injects the
current trace context into the call's metadata, the server extracts it and
serves the call inside a span of that trace, and both count calls and time
them by method and status code (:mod:`switchboard.metrics`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from switchboard import metrics
from switchboard.outages import platform_error
from switchboard.errors import (
    BY_CODE,
    Conflict,
    Gone,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    SwitchboardError,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)
from switchboard.masterkey import service_token
from switchboard.settings import Settings

if TYPE_CHECKING:
    from switchboard.rpc_access import AccessControl

__all__ = [
    "PortUnavailable",
    "GrpcServer",
    "servicer",
    "ServiceClients",
    "call",
    "GRPC_STATUS",
    "grpc_status",
    "from_grpc_code",
    "error_status",
    "error_from_status",
    "abort_with",
    "timestamp",
    "forwarded_url",
    "ServerTelemetry",
    "ClientTelemetry",
]

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

T = TypeVar("T")


class PortUnavailable(RuntimeError):
    """The port a server must listen on is taken or cannot be bound."""


def servicer(cls: type[T]) -> type[T]:
    """Class decorator: map domain errors to gRPC status codes on every RPC."""
    for base in cls.__mro__[1:]:
        if base.__name__.endswith("Servicer") and base.__module__.startswith("switchboard.v1"):
            rpc_names = [n for n, v in vars(base).items() if callable(v) and not n.startswith("_")]
            break
    else:
        raise TypeError(f"{cls.__name__} does not derive from a generated *Servicer")
    for name in rpc_names:
        method = vars(cls).get(name)
        if method is None or not inspect.iscoroutinefunction(method):
            continue
        setattr(cls, name, _translating(method))
    return cls


def _translating(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except SwitchboardError as exc:
            await abort_with(context, exc)
        except Exception as exc:
            mapped = platform_error(exc)
            if mapped is not None:
                await abort_with(context, mapped)
            # Never send internals (exception text can quote data) to the caller.
            logger.exception("rpc failed", extra={"rpc": method.__name__})
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    return wrapper


# ErrorInfo.domain of every error our services send.
ERROR_DOMAIN = "switchboard"
_DETAILS_KEY = "grpc-status-details-bin"

GRPC_STATUS: dict[type[SwitchboardError], grpc.StatusCode] = {
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Conflict: grpc.StatusCode.ALREADY_EXISTS,
    Gone: grpc.StatusCode.FAILED_PRECONDITION,
    PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UnsupportedMediaType: grpc.StatusCode.INVALID_ARGUMENT,
    RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    SwitchboardError: grpc.StatusCode.INTERNAL,
}

_FROM_GRPC = {code: cls for cls, code in GRPC_STATUS.items() if cls not in (RateLimited, UnsupportedMediaType)}
# A deadline passing on a call to another service means it is not answering.
_FROM_GRPC[grpc.StatusCode.DEADLINE_EXCEEDED] = Unavailable


def grpc_status(error: SwitchboardError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in GRPC_STATUS:
            return GRPC_STATUS[cls]
    return grpc.StatusCode.INTERNAL


def from_grpc_code(code: grpc.StatusCode, details: str | None, *, reason: str | None = None,
                   field: str | None = None, retry_after_s: float | None = None,
                   metadata: dict[str, str] | None = None) -> SwitchboardError:
    """The platform error a gRPC status stands for.

    ``reason`` and the rest come from the status's details (``ErrorInfo``,
    ``BadRequest``, ``RetryInfo``, see :func:`error_from_status`) when one of our
    services sent it: the error is then rebuilt with its stable code. Without
    them (the channel failed, another server answered) only the class is known.
    """
    cls = BY_CODE.get(reason or "") or _FROM_GRPC.get(code, SwitchboardError)
    if cls is SwitchboardError:
        return SwitchboardError("internal error")
    if reason is None and cls is Unavailable:
        # The channel's own text names internal addresses: say only what it means.
        return Unavailable("a service is unavailable; retry later")
    message = details or code.name.lower()
    if cls is RateLimited:
        return RateLimited(message, retry_after_s=retry_after_s or 1.0, headers=metadata)
    return cls(message, code=reason, field=field)


def error_status(error: SwitchboardError) -> grpc.Status:
    """The gRPC status of a platform error, its meaning kept in ``google.rpc.Status`` details."""
    details = [error_details_pb2.ErrorInfo(reason=error.code, domain=ERROR_DOMAIN,
                                           metadata=getattr(error, "headers", None) or {})]
    if error.field:
        details.append(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)]))
    retry_after_s = getattr(error, "retry_after_s", None)
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after_s * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    return rpc_status.to_status(status_pb2.Status(code=grpc_status(error).value[0], message=error.message,
                                                  details=packed))


def error_from_status(code: grpc.StatusCode, message: str | None,
                      trailing_metadata: Any) -> SwitchboardError:
    """The platform error a call ended with, rebuilt from its status details where our service sent them."""
    found: dict[str, Any] = {}
    raw = next((v for k, v in (trailing_metadata or ()) if k == _DETAILS_KEY), None)
    if isinstance(raw, bytes):
        status = status_pb2.Status()
        with contextlib.suppress(Exception):  # not ours, or not parseable: the code alone decides
            status.ParseFromString(raw)
        for detail in status.details:
            info, bad, retry = (error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest(),
                                error_details_pb2.RetryInfo())
            if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                found["reason"], found["metadata"] = info.reason, dict(info.metadata)
            elif detail.Unpack(bad) and bad.field_violations:
                found["field"] = bad.field_violations[0].field
            elif detail.Unpack(retry):
                found["retry_after_s"] = retry.retry_delay.ToNanoseconds() / 1e9
    if "reason" not in found:
        return from_grpc_code(code, message)
    return from_grpc_code(code, message, **found)


async def abort_with(context: grpc.aio.ServicerContext, error: SwitchboardError) -> None:
    """End the call with the error's status and details."""
    status = error_status(error)
    await context.abort(status.code, status.details, trailing_metadata=status.trailing_metadata)


def _traced(method: str) -> bool:
    # Health checks and reflection are counted, but not worth a span each
    # (the supervisor and probes call them every few hundred milliseconds).
    return not method.startswith("/grpc.")


def _span_status(span: trace.Span, code: grpc.StatusCode) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))


class ServerTelemetry(grpc.aio.ServerInterceptor):
    """Serves each unary call in a span continuing the caller's trace, and counts and times it."""

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler  # unknown methods, and streams (health Watch, reflection), pass untouched
        method: str = details.method
        inner = handler.unary_unary
        traced = _traced(method)

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            failed = False
            with _server_span(method, context) if traced else contextlib.nullcontext() as span:
                try:
                    return await inner(request, context)
                except BaseException:
                    failed = True  # context.abort() raises once the code is set; anything else is a crash
                    raise
                finally:
                    code = context.code() or (grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK)
                    if failed and code is grpc.StatusCode.OK:
                        code = grpc.StatusCode.UNKNOWN
                    metrics.record_grpc_server(method, code.name, time.perf_counter() - started)
                    if span is not None:
                        _span_status(span, code)

        return grpc.unary_unary_rpc_method_handler(
            observed, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


def _server_span(method: str, context: grpc.aio.ServicerContext) -> Any:
    carrier = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    return _tracer.start_as_current_span(method.lstrip("/"), context=propagate.extract(carrier), kind=SpanKind.SERVER,
                                         attributes=_rpc_attributes(method), record_exception=False,
                                         set_status_on_exception=False)


def _rpc_attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


class ClientTelemetry(grpc.aio.UnaryUnaryClientInterceptor):
    """Calls another service in a client span whose context travels in the call's metadata; counts and times it.

    ``authorization``: the metadata value every call carries (the service token, switchboard/rpc_access.py),
    unless the call brings its own (the edge calling for a REST caller, with the caller's key).
    """

    def __init__(self, authorization: str | None = None) -> None:
        self._credential = (("authorization", authorization),) if authorization else ()

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails,
                                    request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        started = time.perf_counter()
        with _tracer.start_as_current_span(method.lstrip("/"), kind=SpanKind.CLIENT,
                                           attributes=_rpc_attributes(method),
                                           record_exception=False, set_status_on_exception=False) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            given = tuple(details.metadata) if details.metadata else ()
            own = any(key == "authorization" for key, _ in given)
            metadata = grpc.aio.Metadata(*(() if own else self._credential), *given)
            for key, value in carrier.items():
                metadata.add(key, value)
            call = await continuation(details._replace(metadata=metadata), request)
            # Wait for the outcome here (it does not raise) so the span and the
            # timing cover the whole call; the caller then awaits a finished call.
            code = await call.code()
            _span_status(span, code)
        metrics.record_grpc_client(method, code.name, time.perf_counter() - started)
        return call


class GrpcServer:
    """An aio gRPC server with health and reflection.

    SO_REUSEPORT is off unless ``shared_port`` (several processes of one
    service, SWITCHBOARD_<SERVICE>_PROCESSES): otherwise a second server on the
    same port would silently share (and steal half of) its traffic instead of
    failing loudly.
    """

    def __init__(self, service_name: str, full_names: list[str], access: AccessControl,
                 shared_port: bool = False) -> None:
        """``access``: who may call what (switchboard.rpc_access.AccessControl); every server has one."""
        self.service_name = service_name
        self.full_names = full_names
        access.serve(full_names)
        # Telemetry first: refused calls are counted and traced too.
        self.server = grpc.aio.server(interceptors=[ServerTelemetry(), access],
                                      options=[("grpc.so_reuseport", 1 if shared_port else 0)])
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*full_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        address = f"{host}:{port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise PortUnavailable(f"{self.service_name}: cannot listen on {address} for gRPC: {exc}") from None
        if self.port == 0:
            raise PortUnavailable(f"{self.service_name}: cannot listen on {address} for gRPC (port in use?)")
        await self.server.start()
        for name in ("", *self.full_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        logger.info("grpc listening", extra={"address": f"{host}:{self.port}"})
        return self.port

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def call(awaitable: Awaitable[T]) -> T:
    """Await a client call, turning a gRPC status into the platform's exception."""
    try:
        return await awaitable
    except grpc.aio.AioRpcError as exc:
        raise error_from_status(exc.code(), exc.details(), exc.trailing_metadata()) from None


class ServiceClients:
    """Lazily opened channels to the other services, one per target, each call carrying the service token."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, service: str) -> grpc.aio.Channel:
        if service not in self._channels:
            self._channels[service] = grpc.aio.insecure_channel(
                self.settings.grpc_target(service),
                interceptors=[ClientTelemetry(f"Bearer {service_token(self.settings)}")])
        return self._channels[service]

    def stub(self, service: str, stub_class: Callable[[grpc.aio.Channel], T]) -> T:
        return stub_class(self.channel(service))

    @property
    def timeout(self) -> float:
        return self.settings.rpc_timeout_s

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()



def forwarded_url(context) -> str:
    """The address a REST caller reached the edge at: the edge forwards it, as grpc-gateway does."""
    metadata = dict(context.invocation_metadata() or ())
    host = metadata.get("x-forwarded-host")
    return f"{metadata.get('x-forwarded-proto', 'http')}://{host}" if host else ""


def timestamp(value: datetime | None) -> Timestamp | None:
    """A protobuf Timestamp for a datetime (None stays unset)."""
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts
