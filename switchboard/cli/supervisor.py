"""``switchboard up``: the infrastructure and all six services under one supervisor.

Each service runs as its own process (``python -m services.<name>``), exactly as
in production. A service that crashes is restarted with backoff and the reason
(exit code or signal) is logged; one that exits with EXIT_CONFIG (a taken port,
a bad setting) is not restarted: everything stops with a clear message instead.

The embedded nats-server and PostgreSQL are supervised the same way: one that
dies is restarted with backoff on the port it had (a stale ``postmaster.pid``
is cleared first), and the services, which were never stopped, reconnect by
themselves. The supervisor is a child subreaper: processes orphaned under it
(a killed postmaster's backends) are reaped, never left as zombies.
Ctrl-C or SIGTERM stops the services first, then the embedded servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.client import Client
from switchboard.cli.embedded import EmbeddedError, EmbeddedNats, EmbeddedNatsCluster, EmbeddedPostgres, free_port
from switchboard.errors import SwitchboardError
from switchboard.messaging import MANAGE_TIMEOUT_S, connect_nats, ensure_streams
from switchboard.masterkey import load_or_create_master_key, service_token
from switchboard.service import EXIT_CONFIG
from switchboard.settings import SERVICE_NAMES, Settings

__all__ = ["Supervisor", "StartupError"]

logger = logging.getLogger("switchboard.cli.supervisor")

ADMIN_KEY_FILE = "admin.key"


class StartupError(RuntimeError):
    """The platform cannot start; the message says why and what to change."""


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Adopt the orphans of our children (Linux), so that we, not a container's
    pid 1 that may never wait, reap them."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1)
    except (OSError, AttributeError):
        pass


def reap_orphans(known: set[int]) -> list[int]:
    """Reap exited children that are not ours to poll (adopted orphans); returns their pids.

    ``waitid(WNOWAIT)`` looks without reaping, so a service or server that died
    is left for its ``Popen.poll()``, which reads its exit status.
    """
    reaped: list[int] = []
    while True:
        try:
            found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return reaped
        if found is None or found.si_pid in known:
            return reaped
        os.waitpid(found.si_pid, 0)
        reaped.append(found.si_pid)


def restart_delay(restarts: int, ran_for_s: float) -> tuple[int, float]:
    """Back off while a process keeps dying; one that ran a while starts fresh.

    Returns the new restart count and the delay before the next start.
    """
    restarts = 0 if ran_for_s > 30 else restarts + 1
    return restarts, min(0.5 * 2 ** restarts, 15.0)


@dataclass
class Child:
    """One process of a service: ``delivery``, then ``delivery-2``, ... when it runs several."""

    service: str
    index: int = 0
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    # Its own /metrics port (the first process has the service's; the others one chosen at start).
    metrics_port: int | None = None

    @property
    def name(self) -> str:
        return self.service if self.index == 0 else f"{self.service}-{self.index + 1}"


@dataclass
class Infrastructure:
    """An embedded server under supervision."""

    server: EmbeddedNats | EmbeddedPostgres
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    down_since: float | None = None


class Supervisor:
    def __init__(self, settings: Settings, services: tuple[str, ...] = SERVICE_NAMES) -> None:
        self.settings = settings.with_cluster().with_machine_processes()
        self.services = services
        self.nats: EmbeddedNats | EmbeddedNatsCluster | None = None
        self.postgres: EmbeddedPostgres | None = None
        instances = [Child(name, index) for name in services for index in range(self.settings.process_count(name))]
        self.children = {child.name: child for child in instances}
        self.infrastructure: list[Infrastructure] = []
        self.infrastructure_ports: dict[str, int] = {}
        # An embedded NATS cluster's nodes: each one's (client, cluster, monitoring) port.
        self.nats_cluster_ports: list[tuple[int, int, int]] = []
        self._stop = False
        self.run_dir = settings.state_dir / "run"

    # -- start-up ------------------------------------------------------------

    def _assign_ports(self) -> None:
        """Check every configured port is free; choose free ones where 0 is configured."""
        s = self.settings
        wanted = {"HTTP edge": ("SWITCHBOARD_HTTP_PORT", s.edge.host, s.edge.port)}
        for name in self.services:
            wanted[f"{name} gRPC"] = (f"SWITCHBOARD_{name.upper()}_GRPC_PORT", s.grpc_host, s.grpc_ports[name])
            if s.telemetry.metrics:
                wanted[f"{name} metrics"] = (f"SWITCHBOARD_{name.upper()}_METRICS_PORT", s.telemetry.metrics_host,
                                             s.telemetry.metrics_ports[name])
        for label, (variable, host, port) in wanted.items():
            if port and not _port_free(host, port):
                raise StartupError(f"port {port} on {host} ({label}) is already in use; "
                                   f"stop what holds it or set {variable}")
        taken = {s.edge.port, *s.grpc_ports.values(), *s.telemetry.metrics_ports.values()}

        def choose(host: str) -> int:
            # Free now and distinct from every other port chosen or configured here.
            while (port := free_port(host)) in taken:
                pass
            taken.add(port)
            return port

        # The embedded servers' ports are chosen here too, so they can never be one given to a service.
        self.infrastructure_ports = {name: choose("127.0.0.1") for name, url in
                                     (("nats", s.nats_url), ("postgres", s.database_url)) if not url}
        if not s.nats_url and s.bus.nats_cluster > 1:
            self.nats_cluster_ports = [(choose("127.0.0.1"), choose("127.0.0.1"), choose("127.0.0.1"))
                                       for _ in range(s.bus.nats_cluster)]
        grpc_ports = {name: port or choose(s.grpc_host) for name, port in s.grpc_ports.items()}
        telemetry = s.telemetry
        metrics_ports = {name: port or choose(telemetry.metrics_host)
                         for name, port in telemetry.metrics_ports.items()} if telemetry.metrics \
            else dict(telemetry.metrics_ports)
        self.settings = replace(s, grpc_ports=grpc_ports).with_group("edge", port=s.edge.port or choose(s.edge.host)) \
            .with_group("telemetry", metrics_ports=metrics_ports)
        # Where everything listens, for operators and tools (ports may have been chosen here):
        # "http", "<service>" (gRPC, shared by a service's processes) and "<process>_metrics".
        ports = {"http": self.settings.edge.port, **grpc_ports}
        if telemetry.metrics:
            for child in self.children.values():
                first = child.index == 0
                child.metrics_port = metrics_ports[child.service] if first else choose(telemetry.metrics_host)
                ports[f"{child.name}_metrics"] = child.metrics_port
        (self.run_dir / "ports.json").write_text(json.dumps(ports))

    def _start_infrastructure(self) -> None:
        s = self.settings
        nats_url, database_url = s.nats_url, s.database_url
        try:
            if not nats_url:
                options = dict(max_payload=max(8 * 1024 * 1024, s.max_message_bytes),
                               max_file_store=s.bus.nats_max_file_store)
                if s.bus.nats_cluster > 1:
                    self.nats = EmbeddedNatsCluster(s.state_dir, s.bus.nats_cluster, self.nats_cluster_ports,
                                                    **options)
                    servers = self.nats.nodes
                else:
                    self.nats = EmbeddedNats(s.state_dir / "nats", **options)  # type: ignore[arg-type]
                    self.nats.port = self.infrastructure_ports["nats"]
                    servers = [self.nats]
                nats_url = self.nats.start()
                # Each node is watched, and restarted, as a server of its own.
                self.infrastructure += [Infrastructure(server, started_at=time.monotonic()) for server in servers]
                logger.info("embedded NATS started", extra={"url": nats_url, "nodes": len(servers)})
            if not database_url:
                self.postgres = EmbeddedPostgres(s.state_dir / "postgres")
                self.postgres.port = self.infrastructure_ports["postgres"]
                database_url = self.postgres.start()
                self.infrastructure.append(Infrastructure(self.postgres, started_at=time.monotonic()))
                logger.info("embedded PostgreSQL started", extra={"port": self.postgres.port})
        except EmbeddedError as exc:
            raise StartupError(str(exc)) from None
        self.settings = s.with_infrastructure(nats_url, database_url)

    def _ensure_streams(self) -> None:
        """Declare the streams once before the services start: on a cluster, a dozen processes creating
        the same streams of 3 replicas at once would each wait on the others' elections."""
        async def declare() -> None:
            nc = await connect_nats(self.settings.nats_url or "", "switchboard-supervisor")
            try:
                await ensure_streams(nc.jetstream(timeout=MANAGE_TIMEOUT_S), self.settings)
            finally:
                await nc.close()

        try:
            asyncio.run(declare())
        except Exception as exc:  # NATS refused the declarations: nothing would run
            raise StartupError(f"could not declare the JetStream streams: {exc}") from None

    def _child_env(self, child: Child) -> dict[str, str]:
        env = dict(os.environ)
        settings = replace(self.settings, supervisor_pid=os.getpid(), process_index=child.index)
        if child.metrics_port is not None:
            settings = settings.with_group(
                "telemetry", metrics_ports={**settings.telemetry.metrics_ports, child.service: child.metrics_port})
        env.update(settings.as_env())
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{child.service}"],
            env=self._child_env(child),
            stdin=subprocess.DEVNULL,
            # Own process group: Ctrl-C reaches only the supervisor, which then
            # stops services before the databases they are using.
            start_new_session=True,
        )
        child.started_at = time.monotonic()
        (self.run_dir / f"{child.name}.pid").write_text(f"{child.process.pid}\n")
        logger.info("service started", extra={"service": child.name, "pid": child.process.pid})

    def _wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.children)
        while pending and time.monotonic() < deadline and not self._stop:
            for name in sorted(pending):
                child = self.children[name]
                assert child.process is not None
                code = child.process.poll()
                if code is not None:
                    raise StartupError(f"service {name} {_describe_exit(code)} during start-up (see its log above)")
                if self._serving(child):
                    pending.discard(name)
            if pending:
                time.sleep(0.2)
        if pending and not self._stop:
            raise StartupError(f"services not healthy after {timeout:.0f}s: {', '.join(sorted(pending))}")

    def _serving(self, child: Child) -> bool:
        name = child.service
        if child.index and child.metrics_port:
            # A service's processes share its gRPC port, so a check there may reach another of them;
            # a process's own metrics port opens once it serves (after its gRPC server started).
            with contextlib.suppress(OSError), socket.create_connection((self.settings.telemetry.metrics_host,
                                                                         child.metrics_port), timeout=1):
                return True
            return False
        target = self.settings.grpc_target(name)
        try:
            with grpc.insecure_channel(target) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
        except grpc.RpcError:
            return False
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            return False
        if name == "ingest":
            try:
                return httpx.get(f"{self.edge_url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        return True

    @property
    def edge_url(self) -> str:
        return f"http://{self.settings.edge.host}:{self.settings.edge.port}"

    def _bootstrap_admin_key(self) -> str | None:
        """On first start, a tenant and an admin key; returns the key only then."""
        path = self.settings.state_dir / ADMIN_KEY_FILE
        if path.exists():
            return None
        try:
            with Client(service_token(self.settings), targets={"auth": self.settings.grpc_target("auth")},
                        timeout_s=10) as auth:
                tenant = auth.create_tenant(name="default", actor="system")
                issued = auth.create_api_key(tenant_id=tenant.id, name="bootstrap admin", scopes=["admin"],
                                             actor="system")
        except SwitchboardError as exc:
            raise StartupError(f"could not create the bootstrap admin key: {exc.code}") from None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(issued.secret + "\n")
        return issued.secret

    # -- running -------------------------------------------------------------

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop = True

    def _supervise(self) -> None:
        while not self._stop:
            now = time.monotonic()
            for infra in self.infrastructure:
                self._watch_infrastructure(infra, now)
            for child in self.children.values():
                if child.process is None:
                    if now >= child.next_start:
                        self._spawn(child)
                    continue
                code = child.process.poll()
                if code is None:
                    continue
                if code == EXIT_CONFIG:
                    raise StartupError(f"service {child.name} {_describe_exit(code)} (a configuration problem; "
                                       "see its log above); not restarting")
                ran_for = now - child.started_at
                child.restarts, delay = restart_delay(child.restarts, ran_for)
                logger.error("service died; restarting", extra={
                    "service": child.name, "reason": _describe_exit(code), "ran_for_s": round(ran_for, 1),
                    "restart_in_s": delay,
                })
                child.process = None
                child.next_start = now + delay
            reaped = reap_orphans(self._known_pids())
            if reaped:
                logger.info("reaped orphaned processes", extra={"pids": reaped})
            time.sleep(0.2)

    def _known_pids(self) -> set[int]:
        processes = [c.process for c in self.children.values()] + [i.server.process for i in self.infrastructure]
        return {p.pid for p in processes if p is not None}

    def _watch_infrastructure(self, infra: Infrastructure, now: float) -> None:
        """Restart an embedded server that died, with backoff, on the port it had."""
        server = infra.server
        if server.process is not None:
            code = server.process.poll()  # also reaps it: a zombie would hold its lock file
            if code is None:
                return
            ran_for = now - infra.started_at
            infra.restarts, delay = restart_delay(infra.restarts, ran_for)
            infra.down_since = now
            infra.next_start = now + delay
            server.process = None
            logger.error("embedded server died; restarting", extra={
                "server": server.name, "reason": _describe_exit(code), "ran_for_s": round(ran_for, 1),
                "restart_in_s": delay,
            })
            return
        if now < infra.next_start:
            return
        try:
            server.start()
        except EmbeddedError as exc:
            infra.restarts, delay = restart_delay(infra.restarts, 0)
            infra.next_start = time.monotonic() + delay
            logger.error("embedded server did not start; trying again", extra={
                "server": server.name, "error": str(exc).splitlines()[0], "restart_in_s": delay,
            })
            return
        infra.started_at = time.monotonic()
        logger.warning("embedded server restarted", extra={
            "server": server.name, "down_for_s": round(infra.started_at - (infra.down_since or now), 1),
        })
        infra.down_since = None

    def _stop_services(self, timeout: float = 20.0) -> None:
        alive = [c.process for c in self.children.values() if c.process is not None and c.process.poll() is None]
        for process in alive:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in alive:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for child in self.children.values():
            child.process = None
            (self.run_dir / f"{child.name}.pid").unlink(missing_ok=True)

    def _stop_infrastructure(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()
        if self.nats is not None:
            self.nats.stop()

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        become_subreaper()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        try:
            self._assign_ports()
            if not self.settings.master_key:
                self.settings = replace(self.settings, master_key=load_or_create_master_key(self.settings.state_dir))
            self._start_infrastructure()
            self._ensure_streams()
            for child in self.children.values():
                self._spawn(child)
            self._wait_healthy()
            if self._stop:
                return 0
            key = self._bootstrap_admin_key()
            self._announce(key)
            self._supervise()
            return 0
        except StartupError as exc:
            logger.error(str(exc))
            print(f"switchboard: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            self._stop_services()
            self._stop_infrastructure()
            logger.info("stopped")

    def _announce(self, key: str | None) -> None:
        key_file = self.settings.state_dir / ADMIN_KEY_FILE
        lines = [
            "",
            "Switchboard is up.",
            f"  edge:       {self.edge_url}   (webhooks: POST {self.edge_url}/in/<source_id>)",
            f"  api docs:   {self.edge_url}/openapi.json",
        ]
        if self.settings.telemetry.metrics:
            # Each service's /metrics port is in ports.json (chosen at start when configured as 0).
            lines.append(f"  metrics:    ports in {self.run_dir / 'ports.json'}")
        lines.append(f"  state:      {self.settings.state_dir}")
        if key:
            lines.append(f"  admin key:  {key}")
            lines.append(f"              (shown once; also saved to {key_file})")
        else:
            lines.append(f"  admin key:  in {key_file}")
        lines.append("Press Ctrl-C to stop.")
        print("\n".join(lines), flush=True)


def listening_ports(state_dir: Path) -> dict[str, int]:
    """``{"http": port, "<service>": grpc port, "<service>_metrics": metrics port}`` of the running platform."""
    return json.loads((state_dir / "run" / "ports.json").read_text())


def running_port(state_dir: Path, name: str) -> int | None:
    """The port a running `switchboard up` chose for ``name`` ("http" or a service), if any."""
    try:
        return listening_ports(state_dir)[name]
    except (OSError, KeyError, ValueError):
        return None


def edge_url(settings: Settings) -> str:
    """The HTTP edge of the running `switchboard up` (or the configured one)."""
    port = running_port(settings.state_dir, "http") or settings.edge.port
    return f"http://{settings.edge.host}:{port}"


def pid_files(state_dir: Path) -> dict[str, int]:
    """The running services' pids, as the supervisor recorded them."""
    pids = {}
    for path in (state_dir / "run").glob("*.pid"):
        try:
            pids[path.stem] = int(path.read_text())
        except (OSError, ValueError):
            continue
    return pids
