"""The delivery service process."""

from __future__ import annotations

import functools

from plugins.destinations.spec import DestinationContext
from plugins.manager import load_registry
from switchboard.circuit import CircuitBreakers
from services.delivery.endpoints import EndpointManager
from services.delivery.limits import CircuitSync, SharedRateLimits
from services.delivery.options import EndpointOptions
from services.delivery.ordering import Sequencer, Upstream
from services.delivery.retention import DeliveryPruner
from services.delivery.retry import RetryPolicy
from services.delivery.servicer import DeliveryServicer
from services.delivery.delivery_log import DeliveryLog
from services.delivery.endpoint_store import EndpointStore
from services.delivery.worker import DeliveryWorker
from switchboard.bus import Bus
from switchboard.events import DeliveryMessage
from switchboard.messaging import CONSUMERS, consume, reader
from switchboard.netguard import parse_networks
from switchboard.masterkey import secret_box
from switchboard.outbound import OutboundClient
from switchboard.service import Runtime, ServiceApp
from switchboard.v1 import delivery_pb2_grpc as rpc


class DeliveryApp(ServiceApp):
    name = "delivery"
    grpc_services = ["switchboard.v1.DeliveryService"]

    def register(self, server, runtime: Runtime) -> None:
        self.registry = load_registry()
        # Signing secrets are sealed at rest.
        self.endpoints = EndpointStore(runtime.pool, box=secret_box(runtime.settings))
        self.log = DeliveryLog(runtime.pool)
        delivery = runtime.settings.delivery
        self.allowed = parse_networks(delivery.destination_allowlist)
        endpoints = EndpointManager(self.endpoints, self.registry, delivery.allow_private_destinations, self.allowed)
        rpc.add_DeliveryServiceServicer_to_server(
            DeliveryServicer(self.endpoints, endpoints, self.log, Bus(runtime.js, runtime.settings.publish_timeout_s)),
            server)

    async def migrated(self, runtime: Runtime) -> None:
        await self.endpoints.reseal()

    async def start(self, runtime: Runtime) -> None:
        s = runtime.settings
        delivery = s.delivery
        # Every connection goes to an address the SSRF guard has just checked.
        self.http = OutboundClient(allow_private=delivery.allow_private_destinations, allowed=self.allowed,
                                   max_idle_per_origin=delivery.concurrency)
        # Every delivery process takes from one consumer: each endpoint's rate limit (in PostgreSQL)
        # and circuit (in the DELIVERY_CIRCUITS bucket) are shared by all of them (limits.py).
        circuits = CircuitBreakers(threshold=s.circuit_threshold, cooldown_s=s.circuit_cooldown_s)
        circuit_sync = CircuitSync(runtime.nc, circuits)
        worker = DeliveryWorker(
            # Reports to analytics go out unacked on the connection (switchboard/bus.py).
            Bus(runtime.js, s.publish_timeout_s, nc=runtime.nc),
            self.endpoints,
            self.log,
            self.registry,
            DestinationContext(http=self.http, timeout_s=delivery.timeout_s,
                               allow_private_networks=delivery.allow_private_destinations,
                               allowed_networks=self.allowed, connections_guarded=True, nats=runtime.nc),
            EndpointOptions(
                max_in_flight=delivery.endpoint_max_in_flight,
                rate_limit=None,
                timeout_s=delivery.timeout_s,
                retry=RetryPolicy(max_attempts=delivery.max_attempts, base_delay_s=delivery.retry_base_s),
                auto_disable_after_s=delivery.endpoint_auto_disable_s,
            ),
            circuits,
            rate_limits=SharedRateLimits(self.endpoints),
            circuit_sync=circuit_sync,
            processes=s.process_count("delivery"),
            concurrency=delivery.concurrency,
        )
        # Deliveries to endpoints ordered per key wait in PostgreSQL; every process sends their heads.
        sequencer = Sequencer(worker.ordered, Upstream(runtime.nc), functools.partial(worker.deliver, parked=True),
                              worker.ordering_path, capacity=delivery.concurrency)
        worker.parked = sequencer.wake
        runtime.background(sequencer.run(runtime.stopping), "ordered deliveries")
        runtime.background(circuit_sync.run(runtime.stopping), "circuits watch")
        runtime.background(consume(
            runtime.nc, CONSUMERS["delivery"], worker.handle, read=reader(DeliveryMessage),
            concurrency=delivery.concurrency, stopping=runtime.stopping,
        ), "deliveries consumer")
        pruner = DeliveryPruner(runtime.pool, delivery.retention_days)
        runtime.singleton("delivery.retention", functools.partial(pruner.run, s.retention_prune_interval_s))

    async def close(self) -> None:
        await self.http.aclose()
