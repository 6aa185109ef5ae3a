"""The ingest service process: the HTTP edge and IngestService."""

from __future__ import annotations

import ipaddress
import logging
from typing import cast
import uvicorn

from plugins.manager import load_registry
from gateway.app import EdgeServer, bind_http, build_edge
from switchboard.apikeys import Authenticator
from gateway.context import EdgeContext
from gateway.event_schemas import EventSchemas
from services.ingest.intake import WebhookIntake
from services.ingest.publisher import JetStreamPublisher, SeenEventIds
from switchboard.masterkey import previous_master_keys, require_master_key, secret_box
from switchboard.portal_tokens import PortalSigner
from switchboard.ratelimit import RateLimit
from switchboard.shared_buckets import SharedTokenBuckets
from services.ingest.servicer import IngestServicer
from services.ingest.source_feed import SourceFeed, SourceReconciler, SourceWatcher
from services.ingest.sources import SourceMirror, SourceStore
from switchboard.service import Runtime, ServiceApp
from switchboard.v1 import ingest_pb2_grpc as rpc

logger = logging.getLogger(__name__)


class IngestApp(ServiceApp):
    """``authenticator_factory`` is there for the auth benchmark's baseline; the
    service itself always uses :class:`Authenticator`."""

    name = "ingest"
    # Webhooks need NATS only (sources come from the bucket SOURCES): start without PostgreSQL too.
    needs_database_to_start = False

    def __init__(self, authenticator_factory=None) -> None:
        self.authenticator_factory = authenticator_factory
    grpc_services = ["switchboard.v1.IngestService"]

    def register(self, server, runtime: Runtime) -> None:
        self.registry = load_registry()
        # Sources as the bucket SOURCES tells them: webhooks find theirs without PostgreSQL.
        self.mirror = SourceMirror()
        # Sources' secrets are sealed at rest, in PostgreSQL and in the bucket alike.
        self.box = secret_box(runtime.settings)
        self.feed = SourceFeed(runtime.nc, self.box)
        self.sources = SourceStore(runtime.pool, self.registry, mirror=self.mirror, feed=self.feed, box=self.box)
        s = runtime.settings
        publisher = JetStreamPublisher(runtime.nc, s.publish_timeout_s, s.max_message_bytes,
                                       SeenEventIds(runtime.nc))
        # One intake for webhooks and published events, over HTTP and gRPC alike.
        self.intake = WebhookIntake(self.sources, self.registry, publisher,
                                    RateLimit(s.edge.source_rate_per_s, s.edge.source_burst),
                                    SharedTokenBuckets(runtime.js, "source"))
        self.servicer = IngestServicer(self.sources, self.intake, s.edge.public_url)
        rpc.add_IngestServiceServicer_to_server(self.servicer, server)

    async def migrated(self, runtime: Runtime) -> None:
        await self.sources.reseal()

    def api_keys(self, runtime: Runtime) -> Authenticator:
        if self.authenticator_factory is not None:
            return self.authenticator_factory(runtime.clients, ttl_s=runtime.settings.access.auth_cache_ttl_s)
        return super().api_keys(runtime)

    async def start(self, runtime: Runtime) -> None:
        s = runtime.settings
        sock = bind_http(s.edge.host, s.edge.port, shared=s.process_count("ingest") > 1)
        # Until the watch has read the bucket (moments), webhooks find their source in PostgreSQL.
        watcher = SourceWatcher(runtime.nc, self.mirror, self.box)
        runtime.background(watcher.run(runtime.stopping), "sources watch")
        reconciler = SourceReconciler(self.sources, self.feed, watcher, s.edge.source_reconcile_interval_s)
        runtime.background(reconciler.run(runtime.stopping), "sources reconciliation")
        edge = EdgeContext(
            settings=s,
            intake=self.intake,
            database=runtime.pool,
            authenticator=cast(Authenticator, runtime.api_keys),  # serve() sets it before start()
            clients=runtime.clients,
            nc=runtime.nc,
            key_buckets=SharedTokenBuckets(runtime.js, "key"),
            key_rate=RateLimit(s.access.key_rate_per_s, s.access.key_burst),
            trusted_proxies=tuple(ipaddress.ip_network(n) for n in s.edge.trusted_proxies),
            event_schemas=EventSchemas(runtime.clients),
            portal=PortalSigner(require_master_key(s), previous_master_keys(s)),
        )
        config = uvicorn.Config(
            build_edge(edge), log_config=None, access_log=False, lifespan="off",
            timeout_graceful_shutdown=10, proxy_headers=False, server_header=False,
        )
        self.server = EdgeServer(config)
        runtime.background(self.server.serve(sockets=[sock]), "http edge")
        host = "localhost" if s.edge.host in ("", "0.0.0.0", "::") else s.edge.host
        self.servicer.edge_url = f"http://{host}:{sock.getsockname()[1]}"
        logger.info("http edge listening", extra={"url": self.servicer.edge_url})

    async def stop(self) -> None:
        # Stop accepting requests and finish those in flight (each awaits its
        # JetStream ack) before NATS is drained.
        self.server.should_exit = True
