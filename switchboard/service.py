"""The life of one service process: start, serve, stop gracefully.

``python -m services.<name>`` builds the service's :class:`ServiceApp` and hands
it to :func:`run`, which reads settings, connects to PostgreSQL (applying the
service's migrations) and NATS (declaring the streams), serves gRPC with health
and reflection and ``/metrics`` on the service's metrics port, starts the
app's background work (and, for a service that owns a durable consumer, the
poll of its lag), and on SIGTERM/SIGINT stops taking work, lets in-flight work
finish, drains NATS and closes the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import inspect
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from collections.abc import Callable, Coroutine

import grpc
import uvloop
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from switchboard.apikeys import Authenticator, record_audit
from switchboard.database import DatabaseUnavailable, apply_migrations, open_pool
from switchboard.errors import Unavailable
from switchboard.leases import Leases
from switchboard.logs import configure_logging
from switchboard.messaging import CONSUMERS, MANAGE_TIMEOUT_S, connect_nats, ensure_streams
from switchboard.metrics import MetricsServer, watch_consumer_lag
from switchboard.outages import platform_error
from switchboard.rpc import GrpcServer, PortUnavailable, ServiceClients
from switchboard.rpc_access import AccessControl
from switchboard.settings import Settings, SettingsError
from switchboard.telemetry import setup_tracing

__all__ = ["Runtime", "ServiceApp", "run", "EXIT_CONFIG", "EXIT_UNAVAILABLE", "die_with_parent"]

logger = logging.getLogger(__name__)

# Exit codes the supervisor reads: a configuration problem (a taken port, a bad
# setting) is not fixed by restarting, an unreachable dependency may be.
EXIT_CONFIG = 78  # EX_CONFIG
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Have the kernel send SIGTERM to this process when its parent dies (call in the child)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: best effort only
        pass


@dataclass
class Runtime:
    """What a running service is given: settings and open connections."""

    settings: Settings
    pool: AsyncConnectionPool
    nc: NATS
    js: JetStreamContext
    clients: ServiceClients
    # API keys as this process verifies them (one cache for its gRPC port and, in ingest, the REST API).
    api_keys: Authenticator | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task] = field(default_factory=list)
    failure: BaseException | None = None

    def background(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task:
        """Run long-lived work; if it dies, the whole process stops (and is restarted)."""
        task = asyncio.create_task(coro, name=name)

        def done(t: asyncio.Task) -> None:
            if not t.cancelled() and t.exception() is not None and not self.stopping.is_set():
                logger.error("%s failed; stopping the service", name, exc_info=t.exception())
                self.failure = t.exception()
                self.stopping.set()

        task.add_done_callback(done)
        self.tasks.append(task)
        return task

    def singleton(self, name: str, work: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> asyncio.Task:
        """Run ``work(lost)`` in one process of the platform at a time, however many replicas run: the one
        holding the lease ``name`` (switchboard/leases.py); ``lost`` is set once this process loses the
        lease or stops, and the work then ends."""
        return self.background(Leases(self.js).run(name, work, self.stopping), f"leased {name}")

    async def join(self) -> None:
        """Wait for all background work to finish (after ``stopping`` is set)."""
        await asyncio.gather(*self.tasks, return_exceptions=True)


class ServiceApp:
    """One service: its gRPC servicers and its background work.

    Each service owns the PostgreSQL schema named after it, with its numbered
    migrations in the ``migrations/`` folder beside its app module.
    """

    name: ClassVar[str]
    # Full protobuf names of the gRPC services it serves (for health and reflection).
    grpc_services: ClassVar[list[str]]
    # False for a service that can do its main work with PostgreSQL down (the
    # edge takes webhooks): it starts all the same, and migrates once it is back.
    needs_database_to_start: ClassVar[bool] = True

    @property
    def schema(self) -> str:
        return self.name

    @property
    def migrations(self) -> Path:
        return Path(inspect.getfile(type(self))).parent / "migrations"

    def register(self, server: grpc.aio.Server, runtime: Runtime) -> None:
        """Add this service's servicers to the server."""
        raise NotImplementedError

    async def record_audit(self, runtime: Runtime, tenant_id: str, actor: str, action: str, resource: str) -> None:
        """Write an audited call an API key made over gRPC to AuthService's audit log."""
        await record_audit(runtime.clients, tenant_id, actor, action, resource)

    def api_keys(self, runtime: Runtime) -> Authenticator:
        """How this process verifies API keys (its gRPC port, and the edge's REST API): AuthService, cached."""
        access = runtime.settings.access
        return Authenticator.over_grpc(runtime.clients, ttl_s=access.auth_cache_ttl_s,
                                       stale_s=access.auth_cache_stale_s)

    async def start(self, runtime: Runtime) -> None:
        """Start background work (consumers, the HTTP edge). Called after gRPC is up."""

    async def migrated(self, runtime: Runtime) -> None:
        """Once the schema is current (at start, or once PostgreSQL is back): bring stored data up to
        date (secrets sealed in the clear or with a previous master key are sealed again)."""

    async def stop(self) -> None:
        """Stop taking new work (background consumers stop on ``runtime.stopping``)."""

    async def close(self) -> None:
        """Release what start() opened; called once in-flight work has finished."""


async def serve(app: ServiceApp, settings: Settings) -> None:
    nats_url, database_url = settings.require_infrastructure()
    pool_options: dict[str, Any] = dict(max_size=20, application_name=f"switchboard-{app.name}")
    try:
        pool = await open_pool(database_url, **pool_options)
        database_up = True
    except DatabaseUnavailable as exc:
        if app.needs_database_to_start:
            raise
        logger.warning("starting without PostgreSQL; migrating once it is back", extra={"error": exc.message})
        pool = await open_pool(database_url, wait=False, **pool_options)
        database_up = False
    nc: NATS | None = None
    server: GrpcServer | None = None
    metrics_server: MetricsServer | None = None
    clients = ServiceClients(settings)
    try:
        if database_up:
            await apply_migrations(pool, app.schema, app.migrations)
        nc = await connect_nats(nats_url, f"switchboard-{app.name}")
        js = nc.jetstream()
        await ensure_streams(nc.jetstream(timeout=MANAGE_TIMEOUT_S), settings)
        runtime = Runtime(settings, pool, nc, js, clients)
        runtime.api_keys = app.api_keys(runtime)
        access = AccessControl.for_process(runtime.api_keys, settings,
                                           audit=functools.partial(app.record_audit, runtime), js=js)
        server = GrpcServer(app.name, app.grpc_services, access, shared_port=settings.process_count(app.name) > 1)
        app.register(server.server, runtime)
        if database_up:
            await app.migrated(runtime)
        else:
            runtime.background(migrate_when_back(pool, app, runtime), "migrations")
        await server.start(settings.grpc_host, settings.grpc_ports[app.name])
        if settings.telemetry.metrics:
            metrics_server = start_metrics(app.name, settings)
        await app.start(runtime)
        owned = [spec for owner, spec in CONSUMERS.items() if owner == app.name]
        if owned and settings.telemetry.metrics:
            lag_interval_s = settings.telemetry.consumer_lag_interval_s
            runtime.background(watch_consumer_lag(js, owned, lag_interval_s, runtime.stopping),
                               "consumer lag metrics")
        # Everything loaded so far lives as long as the process: keep it out of
        # the collector's scans, which otherwise grow with every import.
        gc.freeze()
        logger.info("service started", extra={"port": server.port})

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runtime.stopping.set)
        await runtime.stopping.wait()
        logger.info("service stopping")
        await app.stop()
        await runtime.join()
        await app.close()
        if runtime.failure is not None:
            raise RuntimeError(f"{app.name} background work failed: {runtime.failure}")
    finally:
        if server is not None:
            await server.stop(grace=5.0)
        if metrics_server is not None:
            metrics_server.stop()
        if nc is not None and nc.is_connected:
            await nc.drain()
        await clients.close()
        await pool.close()


async def migrate_when_back(pool: AsyncConnectionPool, app: ServiceApp, runtime: Runtime,
                            every_s: float = 2.0) -> None:
    """Apply the service's migrations as soon as PostgreSQL answers (it started without it)."""
    stopping = runtime.stopping
    while not stopping.is_set():
        try:
            await apply_migrations(pool, app.schema, app.migrations)
            logger.info("PostgreSQL is back; migrations checked")
            await app.migrated(runtime)
            return
        except Exception as exc:  # the database still away (or the pool still connecting)
            if platform_error(exc) is None:
                raise
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), every_s)


def start_metrics(name: str, settings: Settings) -> MetricsServer:
    host, port = settings.telemetry.metrics_host, settings.telemetry.metrics_ports[name]
    try:
        metrics_server = MetricsServer(host, port)
    except OSError as exc:
        raise PortUnavailable(f"{name}: cannot listen on {host}:{port} for metrics: {exc.strerror or exc}; "
                              f"set SWITCHBOARD_{name.upper()}_METRICS_PORT") from None
    logger.info("metrics listening", extra={"url": f"http://{host}:{metrics_server.port}/metrics"})
    return metrics_server


def run(app: ServiceApp) -> None:
    """Entry point of ``python -m services.<name>``; exits non-zero with a clear message on failure."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"switchboard-{app.name}: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    if settings.supervisor_pid is not None:
        # Die with the supervisor; set here, not in a preexec_fn, which is unsafe
        # once the supervisor has threads. Check it did not die already.
        die_with_parent()
        if os.getppid() != settings.supervisor_pid:
            sys.exit(EXIT_UNAVAILABLE)
    configure_logging(app.name, settings.telemetry.log_level, settings.telemetry.log_format)
    setup_tracing(app.name, settings.telemetry.otel_exporter, settings.telemetry.otlp_endpoint)
    try:
        # uvloop: the event loop is most of a busy service's CPU; libuv's is about twice as lean.
        uvloop.run(serve(app, settings))
    except (SettingsError, PortUnavailable) as exc:
        logger.error(str(exc))
        print(f"switchboard-{app.name}: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    except Unavailable as exc:
        logger.error(str(exc))
        print(f"switchboard-{app.name}: {exc}", file=sys.stderr)
        sys.exit(EXIT_UNAVAILABLE)
    except KeyboardInterrupt:
        pass
