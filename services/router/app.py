"""The router service process."""

from __future__ import annotations

from services.router.consumer import EventRouter
from services.router.routing import EventStore, RouteStore
from services.router.servicer import RouterServicer
from switchboard.messaging import CONSUMERS, consume
from switchboard.service import Runtime, ServiceApp
from switchboard.v1 import router_pb2_grpc as rpc


class RouterApp(ServiceApp):
    name = "router"
    grpc_services = ["switchboard.v1.RouterService"]

    def register(self, server, runtime: Runtime) -> None:
        self.routes = RouteStore(runtime.pool)
        self.events = EventStore(runtime.pool)
        rpc.add_RouterServiceServicer_to_server(RouterServicer(self.routes, self.events, runtime.clients), server)

    async def start(self, runtime: Runtime) -> None:
        router = EventRouter(runtime.js, self.events, self.routes, runtime.settings.publish_timeout_s)
        runtime.background(consume(
            runtime.js, CONSUMERS["router"], router.handle,
            concurrency=runtime.settings.router_concurrency, stopping=runtime.stopping,
        ), "events consumer")
