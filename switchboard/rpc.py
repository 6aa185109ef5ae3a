"""gRPC helpers: the server every service runs, and typed clients between services.

A servicer is a thin translation layer: decorate it with :func:`servicer` and
any :class:`~switchboard.errors.SwitchboardError` raised by the domain becomes
the matching status code (one table, :data:`switchboard.errors.GRPC_STATUS`).
Clients made by :class:`ServiceClients` give every call the configured
deadline and turn status codes back into the same exceptions.
"""

from __future__ import annotations

import functools
import inspect
import logging
from datetime import datetime
from typing import Any, Awaitable, Callable, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from switchboard.database import as_platform_error
from switchboard.errors import SwitchboardError, from_grpc_code, grpc_status
from switchboard.settings import Settings

__all__ = ["PortUnavailable", "GrpcServer", "servicer", "ServiceClients", "call", "timestamp"]

logger = logging.getLogger(__name__)

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
            await context.abort(grpc_status(exc), exc.message)
        except Exception as exc:
            mapped = as_platform_error(exc)
            if mapped is not None:
                await context.abort(grpc_status(mapped), mapped.message)
            # Never send internals (exception text can quote data) to the caller.
            logger.exception("rpc failed", extra={"rpc": method.__name__})
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    return wrapper


class GrpcServer:
    """An aio gRPC server with health and reflection, bound without SO_REUSEPORT.

    SO_REUSEPORT is off so that a second server on the same port fails loudly
    instead of silently sharing (and stealing half of) its traffic.
    """

    def __init__(self, service_name: str, full_names: list[str]) -> None:
        self.service_name = service_name
        self.full_names = full_names
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
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
        raise from_grpc_code(exc.code(), exc.details()) from None


class ServiceClients:
    """Lazily opened channels to the other services, one per target."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, service: str) -> grpc.aio.Channel:
        if service not in self._channels:
            self._channels[service] = grpc.aio.insecure_channel(self.settings.grpc_target(service))
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



def timestamp(value: datetime | None) -> Timestamp | None:
    """A protobuf Timestamp for a datetime (None stays unset)."""
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts
