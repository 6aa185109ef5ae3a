"""Fault injectors: each acts on a running ``switchboard up`` from outside, as a bad day would.

Every fault's ``inject()`` returns a ``FaultTiming``: when it struck, when it
ended (the same instant for a kill), and when the dependency was back (a new
process serving, the receiver answering 2xx again), or None if it was not back
within ``back_timeout_s``. Faults always undo what they can (SIGCONT, the
receiver healed, the filler stream deleted), also when interrupted.

- ``KillService``: SIGKILL of one service (pid from ``<state>/run/<name>.pid``);
  back when the supervisor has a new live pid there.
- ``KillNats``: SIGKILL of the embedded nats-server (``<state>/nats/nats-server.pid``);
  back when a new nats-server accepts connections.
- ``KillPostgres``: SIGKILL of the embedded postmaster (first line of
  ``<state>/postgres/postmaster.pid``); back when a new postmaster answers a query.
- ``FreezePostgres``: SIGSTOP of the postmaster and all its children, SIGCONT
  after ``seconds``.
- ``ReceiverOutage``: the receiver answers 500/503 for ``seconds``.
- ``NatsStoreFull``: fills JetStream's file store (the server's ``max_file_store``)
  with a stream of its own, keeps it full for ``seconds``, then deletes that stream.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from collections.abc import Callable

import nats
import psycopg
from nats.js import JetStreamContext, api

from switchboard.cli.supervisor import pid_files
from tests.chaos.harness import ChaosReceiver

__all__ = ["Fault", "FaultNotInEffect", "FaultTiming", "FreezePostgres", "KillNats", "KillPostgres",
           "KillService", "NatsStoreFull", "ReceiverOutage"]


class FaultNotInEffect(AssertionError):
    """The fault could not be injected (so the scenario would prove nothing)."""


@dataclass(frozen=True)
class FaultTiming:
    start: float
    end: float
    back: float | None
    # What was done, for the report ("pid 123, back as pid 456", "froze 14 processes").
    detail: str = ""

    @property
    def back_after_s(self) -> float | None:
        return None if self.back is None else self.back - self.end


class Fault(Protocol):
    label: str

    async def inject(self) -> FaultTiming: ...


# -- processes ---------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _children(pid: int) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(int(p.name)) == pid]


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def _kill(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _replaced(old: int, new: int | None, back: float | None) -> str:
    return f"pid {old}, back as pid {new}" if back is not None else f"pid {old}, not back"


async def _wait_until(check: Callable[[], bool], timeout_s: float) -> float | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return time.monotonic()
        await asyncio.sleep(0.1)
    return None


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- services ----------------------------------------------------------------

class _Kill:
    """kill -9 of one process, then waiting for its replacement to serve: the shape of every kill fault."""

    what = "process"

    def __init__(self, state_dir: Path, back_timeout_s: float = 30.0) -> None:
        self.state_dir = state_dir
        self.back_timeout_s = back_timeout_s

    def pid(self) -> int | None:
        raise NotImplementedError

    def serving(self, killed_pid: int) -> bool:
        """A process other than ``killed_pid`` has taken its place and serves."""
        new = self.pid()
        return new is not None and new != killed_pid and _alive(new)

    async def inject(self) -> FaultTiming:
        pid = self.pid()
        if pid is None or not _alive(pid):
            raise FaultNotInEffect(f"no running {self.what} in {self.state_dir}")
        _kill(pid, signal.SIGKILL)
        start = time.monotonic()
        back = await _wait_until(lambda: self.serving(pid), self.back_timeout_s)
        return FaultTiming(start, start, back, _replaced(pid, self.pid(), back))


class KillService(_Kill):
    def __init__(self, state_dir: Path, service: str, back_timeout_s: float = 30.0) -> None:
        super().__init__(state_dir, back_timeout_s)
        self.what = self.service = service
        self.label = f"kill -9 {service}"

    def pid(self) -> int | None:
        return pid_files(self.state_dir).get(self.service)


# -- NATS --------------------------------------------------------------------

def nats_pid_file(state_dir: Path) -> Path:
    return state_dir / "nats" / "nats-server.pid"


def nats_port(state_dir: Path) -> int | None:
    """The embedded nats-server's client port, from its command line (or its config file)."""
    pid = _read_pid(nats_pid_file(state_dir))
    args = _cmdline(pid) if pid else []
    for flag in ("--port", "-p"):
        if flag in args[:-1]:
            return int(args[args.index(flag) + 1])
    try:
        for line in (state_dir / "nats" / "nats-server.conf").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "port":
                return int(value.strip())
    except (OSError, ValueError):
        pass
    return None


class KillNats(_Kill):
    what = "nats-server"
    label = "kill -9 nats-server"

    def pid(self) -> int | None:
        return _read_pid(nats_pid_file(self.state_dir))

    def serving(self, killed_pid: int) -> bool:
        port = nats_port(self.state_dir)
        return super().serving(killed_pid) and port is not None and _port_open(port)


class NatsStoreFull:
    """JetStream's file store full: a stream of our own takes what ``max_file_store`` leaves.

    The platform must be started with that limit (``SWITCHBOARD_NATS_MAX_FILE_STORE``).
    Filling stops at ``limit_bytes`` plus a margin: if JetStream has not refused
    a write by then, the limit is not in effect and the fault raises
    ``FaultNotInEffect`` instead of filling the machine's disk.
    """

    stream = "CHAOS_FILL"
    subject = "chaos.fill"

    def __init__(self, state_dir: Path, limit_bytes: int, seconds: float = 15.0) -> None:
        self.state_dir = state_dir
        self.limit_bytes = limit_bytes
        self.seconds = seconds
        self.label = f"NATS store full for {seconds:.0f}s"

    async def inject(self) -> FaultTiming:
        port = nats_port(self.state_dir)
        if port is None:
            raise FaultNotInEffect("the embedded nats-server's port is unknown")
        nc = await nats.connect(f"nats://127.0.0.1:{port}", max_reconnect_attempts=5)
        js = nc.jetstream()
        try:
            await js.add_stream(api.StreamConfig(name=self.stream, subjects=[self.subject],
                                                 storage=api.StorageType.FILE))
            filled = await self._fill(js)
            start = time.monotonic()
            # Keep it full: the platform's work queues free space as they drain; take it back.
            while time.monotonic() < start + self.seconds:
                if not await self._publish(js, 4096):
                    await asyncio.sleep(0.02)
            await js.delete_stream(self.stream)
            end = time.monotonic()
            return FaultTiming(start, end, end, f"filler took {filled / (1 << 20):.1f} MiB before JetStream refused")
        finally:
            try:
                await js.delete_stream(self.stream)
            except Exception:
                pass  # deleted above, or NATS is gone
            await nc.close()

    async def _fill(self, js: JetStreamContext) -> int:
        filled = 0
        for chunk in (1 << 20, 64 << 10, 4 << 10):
            while await self._publish(js, chunk):
                filled += chunk
                if filled > self.limit_bytes + (16 << 20):
                    raise FaultNotInEffect(
                        f"JetStream took {filled >> 20} MiB, beyond the {self.limit_bytes >> 20} MiB of "
                        "SWITCHBOARD_NATS_MAX_FILE_STORE without refusing a write: the embedded nats-server "
                        "does not honour it (EmbeddedNats should write `jetstream { max_file_store: N }`)")
        return filled

    async def _publish(self, js: JetStreamContext, size: int) -> bool:
        try:
            await js.publish(self.subject, b"\0" * size, timeout=2)
        except Exception:
            return False  # the store is full (or JetStream is unavailable)
        return True


# -- PostgreSQL ----------------------------------------------------------------

def postmaster_file(state_dir: Path) -> Path:
    return state_dir / "postgres" / "postmaster.pid"


def postgres_serving(state_dir: Path, not_pid: int | None = None) -> bool:
    """A postmaster (other than ``not_pid``) of the embedded data folder answers a query."""
    try:
        lines = postmaster_file(state_dir).read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return False
    if pid == not_pid or not _alive(pid):
        return False
    try:
        with psycopg.connect(f"postgresql://switchboard@127.0.0.1:{port}/switchboard", connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


class KillPostgres(_Kill):
    what = "postmaster"
    label = "kill -9 postgres"

    def pid(self) -> int | None:
        return _read_pid(postmaster_file(self.state_dir))

    def serving(self, killed_pid: int) -> bool:
        return postgres_serving(self.state_dir, not_pid=killed_pid)


class FreezePostgres:
    def __init__(self, state_dir: Path, seconds: float = 20.0) -> None:
        self.state_dir = state_dir
        self.seconds = seconds
        self.label = f"SIGSTOP postgres {seconds:.0f}s"

    async def inject(self) -> FaultTiming:
        postmaster = _read_pid(postmaster_file(self.state_dir))
        if postmaster is None or not _alive(postmaster):
            raise FaultNotInEffect(f"no running postmaster in {postmaster_file(self.state_dir)}")
        frozen: list[int] = []
        try:
            # The postmaster first, so it forks nobody new; then its children, twice for a fork in between.
            _kill(postmaster, signal.SIGSTOP)
            frozen.append(postmaster)
            for _ in range(2):
                for child in _children(postmaster):
                    if child not in frozen:
                        _kill(child, signal.SIGSTOP)
                        frozen.append(child)
            start = time.monotonic()
            await asyncio.sleep(self.seconds)
        finally:
            for pid in reversed(frozen):
                _kill(pid, signal.SIGCONT)
        end = time.monotonic()
        return FaultTiming(start, end, end, f"froze postmaster {postmaster} and {len(frozen) - 1} children")


# -- the receiver ----------------------------------------------------------------

class ReceiverOutage:
    def __init__(self, receiver: ChaosReceiver, seconds: float = 30.0,
                 statuses: tuple[int, ...] = (500, 503)) -> None:
        self.receiver = receiver
        self.seconds = seconds
        self.statuses = statuses
        self.label = f"receiver {'/'.join(map(str, statuses))} for {seconds:.0f}s"

    async def inject(self) -> FaultTiming:
        start = time.monotonic()
        self.receiver.fail_for(self.seconds, self.statuses)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.receiver.recover()
        end = time.monotonic()
        return FaultTiming(start, end, end, f"answered {'/'.join(map(str, self.statuses))} in turn")
