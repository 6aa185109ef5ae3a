"""The router service process."""

from __future__ import annotations

from services.router.consumer import EventRouter, publish_delivery
from services.router.replay import ReplayRunner, ReplayStore
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
        self.replays = ReplayStore(runtime.pool)
        rpc.add_RouterServiceServicer_to_server(
            RouterServicer(self.routes, self.events, self.replays, runtime.clients), server)

    async def start(self, runtime: Runtime) -> None:
        router = EventRouter(runtime.js, self.events, self.routes, runtime.settings.publish_timeout_s)
        runtime.background(consume(
            runtime.js, CONSUMERS["router"], router.handle,
            concurrency=runtime.settings.router_concurrency, stopping=runtime.stopping,
        ), "events consumer")
        timeout = runtime.settings.publish_timeout_s

        async def publish(event, route_id: str, endpoint_id: str, replay_id: str) -> None:
            await publish_delivery(runtime.js, event, route_id, endpoint_id, timeout, replay_id)

        runner = ReplayRunner(self.replays, self.routes, publish)
        runtime.background(runner.run(runtime.stopping), "replay runner")
