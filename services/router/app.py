"""The router service process."""

from __future__ import annotations

import functools

from datetime import timedelta

from services.router.ai_client import GrpcAIClient
from services.router.endpoint_types import GrpcEndpointTypes
from services.router.approvals import Approvals
from services.router.consumer import EventRouter, replay_delivery
from services.router.event_catalogue import EventCatalogue
from services.router.dispatch import Dispatcher
from services.router.replay import ReplayRunner, ReplayStore
from services.router.replies import ReplyStore
from services.router.retention import EventPruner, ReplyPruner
from services.router.event_store import EventStore
from services.router.labels import LabelStore
from services.router.route_store import RouteStore
from services.router.servicer import RouterServicer
from services.router.templates import TemplateStore
from switchboard.bus import Bus
from switchboard.events import Event
from switchboard.messaging import CONSUMERS, StreamPublisher, consume, duplicate_window_s, reader
from switchboard.service import Runtime, ServiceApp
from switchboard.v1 import router_pb2_grpc as rpc


class RouterApp(ServiceApp):
    name = "router"
    grpc_services = ["switchboard.v1.RouterService"]

    def register(self, server, runtime: Runtime) -> None:
        s = runtime.settings
        self.routes = RouteStore(runtime.pool)
        self.events = EventStore(runtime.pool, duplicate_window_s(s))
        self.replays = ReplayStore(runtime.pool)
        templates = TemplateStore(runtime.pool)
        catalogue = EventCatalogue(runtime.pool)
        labels = LabelStore(runtime.pool)
        # A classification may walk the whole provider chain, each with its own deadline; it shows the
        # models the tenant's corrections as examples.
        ai = GrpcAIClient(runtime.clients, timeout_s=s.ai.timeout_s * 3 + s.rpc_timeout_s, examples=labels.examples)
        replies = ReplyStore(runtime.pool, s.router.reply_budget, timedelta(seconds=s.router.reply_budget_window_s))
        self.dispatcher = Dispatcher(self.routes, templates, ai, replies, GrpcEndpointTypes(runtime.clients),
                                     catalogue)
        approvals = Approvals(replies, self.events, Bus(runtime.js, s.publish_timeout_s), ai)
        rpc.add_RouterServiceServicer_to_server(
            RouterServicer(self.routes, self.events, self.replays, templates, self.dispatcher, runtime.clients,
                           approvals, catalogue=catalogue, labels=labels),
            server)

    async def start(self, runtime: Runtime) -> None:
        # Every event's deliveries and outcome are published here: the lean publisher (messaging.py).
        bus = Bus(StreamPublisher(runtime.nc), runtime.settings.publish_timeout_s)
        router = EventRouter(bus, self.events, self.dispatcher)
        runtime.background(consume(
            runtime.nc, CONSUMERS["router"], router.handle, read=reader(Event),
            concurrency=runtime.settings.router.concurrency, stopping=runtime.stopping,
        ), "events consumer")
        runner = ReplayRunner(self.replays, replay_delivery(bus, self.dispatcher))
        runtime.background(runner.run(runtime.stopping), "replay runner")
        # Once per platform however many router processes run: each under its lease.
        days, interval_s = runtime.settings.router.retention_days, runtime.settings.retention_prune_interval_s
        for pruner in (EventPruner(runtime.pool, days), ReplyPruner(runtime.pool, days)):
            runtime.singleton(f"{pruner.what.replace(' ', '.')}-retention", functools.partial(pruner.run, interval_s))
