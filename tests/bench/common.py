"""Shared set-up for the benchmarks: embedded infrastructure, processes, wrk."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

import grpc
import httpx
import psycopg

from switchboard.cli.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from switchboard.settings import Settings
from tests.credentials import service_channel
from tests.platform_runner import Platform
from tests.sealing import MASTER_KEY


@contextmanager
def infrastructure() -> Iterator[tuple[str, str, Path]]:
    """(nats_url, database_url, scratch dir) on throwaway embedded servers."""
    scratch = Path(tempfile.mkdtemp(prefix="sb-bench-"))
    nats = EmbeddedNats(scratch / "nats")
    postgres = EmbeddedPostgres(scratch / "pg")
    try:
        yield nats.start(), postgres.start(), scratch
    finally:
        postgres.stop()
        nats.stop()
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def platform_and_receiver(nats_url: str, database_url: str, scratch: Path,
                          **extra: str) -> Iterator[tuple[Platform, str, int]]:
    """(the running platform, the receiver's URL, its pid): every service in its own process, and one fast
    loopback receiver (tests/bench/fast_receiver.py). Endpoints are not held to the per-endpoint in-flight
    default (16): a run may send everything to one endpoint."""
    port = free_port()
    env = bench_env(nats_url, database_url, scratch / "state", SWITCHBOARD_HTTP_PORT="0",
                    SWITCHBOARD_LOG_FORMAT="text", SWITCHBOARD_ENDPOINT_MAX_IN_FLIGHT="64", **extra)
    receiver = spawn(["-m", "tests.bench.fast_receiver", str(port)], env)
    platform = Platform(env)
    try:
        wait_http(f"http://127.0.0.1:{port}/stats")
        platform.start()
        yield platform, f"http://127.0.0.1:{port}", receiver.pid
    finally:
        platform.stop()
        stop(receiver)


def bench_env(nats_url: str, database_url: str, state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update({
        "SWITCHBOARD_NATS_URL": nats_url,
        "SWITCHBOARD_DATABASE_URL": database_url,
        "SWITCHBOARD_STATE_DIR": str(state_dir),
        # As in production: every connection passes the SSRF guard; loopback is allowed.
        "SWITCHBOARD_DESTINATION_ALLOWLIST": "127.0.0.0/8",
        # Throughput, not the per-source limiter, is measured here.
        "SWITCHBOARD_SOURCE_RATE": "1000000",
        "SWITCHBOARD_SOURCE_BURST": "1000000",
        "SWITCHBOARD_KEY_RATE": "1000000",
        "SWITCHBOARD_KEY_BURST": "1000000",
        "SWITCHBOARD_LOG_LEVEL": "WARNING",
        # The tests' key: benchmarks that create endpoints themselves seal them with its box (tests/sealing.py).
        "SWITCHBOARD_MASTER_KEY": MASTER_KEY,
        "PYTHONUNBUFFERED": "1",
    })
    for name in ("INGEST", "ROUTER", "AI", "DELIVERY", "AUTH", "ANALYTICS"):
        env[f"SWITCHBOARD_{name}_GRPC_PORT"] = str(free_port())
        env[f"SWITCHBOARD_{name}_METRICS_PORT"] = str(free_port())
    env.update(extra)
    # Trying another setting: BENCH_SWITCHBOARD_X=v runs the benchmark with SWITCHBOARD_X=v.
    env.update({k.removeprefix("BENCH_"): v for k, v in os.environ.items() if k.startswith("BENCH_SWITCHBOARD_")})
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def command_cpu_seconds(command: str) -> float:
    """CPU time of every running process named ``command`` (``postgres``: the server and its backends)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if stat[stat.index("(") + 1:stat.rindex(")")] == command:
                fields = stat.rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def postgres_cpu_by_application(database_url: str) -> dict[str, float]:
    """CPU seconds of PostgreSQL's backends so far, summed by the ``application_name`` of their sessions
    (each service names its own, ``switchboard-<service>``)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        sessions = conn.execute("SELECT pid, application_name FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                                ).fetchall()
    used: dict[str, float] = {}
    for pid, name in sessions:
        try:
            seconds = cpu_seconds(pid)
        except OSError:  # the session ended meanwhile
            continue
        key = (name or "other").removeprefix("switchboard-")
        used[key] = used.get(key, 0.0) + seconds
    return used


def proc_table() -> dict[int, tuple[int, float, float, tuple[int, int]]]:
    """pid -> (ppid, own utime+stime, waited-for children's cutime+cstime (seconds), (stime, cstime) in ticks)."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick,
                             (int(fields[13]) + int(fields[14])) / tick, (int(fields[12]), int(fields[14])))
    return table


def root_owner(table: dict[int, tuple], roots: dict[int, str]):
    """``owner(pid)``: the name of the root ``pid`` is or descends from, None for any other process
    (each chain up the parents walked once)."""
    owner: dict[int, str | None] = {}

    def owner_of(pid: int) -> str | None:
        chain = []
        while pid not in owner and pid not in roots and pid in table and pid > 1:
            chain.append(pid)
            pid = table[pid][0]
        found = owner[pid] if pid in owner else roots.get(pid)
        for p in chain:
            owner[p] = found
        return found

    return owner_of


def tree_cpu_seconds(roots: dict[int, str]) -> dict[str, float]:
    """CPU seconds so far of each root and its descendants (and those of them it has reaped)."""
    table = proc_table()
    owner_of = root_owner(table, roots)
    used = {name: 0.0 for name in roots.values()}
    for pid, (_, own, children, _) in table.items():
        name = owner_of(pid)
        if name is not None:
            used[name] += own + children
    return used


def machine_cpu_seconds() -> float:
    """CPU time every core has spent busy (not idle or waiting for I/O)."""
    values = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def grpc_channel(env: dict[str, str], service: str) -> grpc.Channel:
    """A blocking channel to a service the benchmark spawned, its calls carrying the service token."""
    return service_channel(Settings.from_env(env), f"127.0.0.1:{env[f'SWITCHBOARD_{service.upper()}_GRPC_PORT']}")


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], env=env, stdin=subprocess.DEVNULL)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk not found: install it (Debian: apt-get install wrk)")
    return wrk


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def _lua_string(raw: bytes) -> str:
    """Bytes as the inside of a Lua string literal, byte for byte."""
    return "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}" for b in raw)


def run_wrk(url: str, body: bytes, headers: dict[str, str], seconds: int, connections: int) -> dict[str, float]:
    """Requests/s and latency percentiles of POSTing ``body`` to ``url``."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    lines = ['wrk.method = "POST"', f'wrk.body = "{_lua_string(body)}"']
    lines += [f'wrk.headers["{k}"] = "{_lua_string(v.encode())}"' for k, v in headers.items()]
    lines += [
        "done = function(summary, latency, requests)",
        '  io.write(string.format("non2xx %d\\n", summary.errors.status))',
        "end",
    ]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        [require_wrk(), "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    script.unlink()

    def found(pattern: str) -> str:
        match = re.search(pattern, out)
        assert match is not None, f"no {pattern!r} in wrk's output:\n{out}"
        return match.group(1)

    rps = float(found(r"Requests/sec:\s+([\d.]+)"))
    p50 = _ms(found(r"\s50%\s+(\S+)"))
    p99 = _ms(found(r"\s99%\s+(\S+)"))
    non2xx = int(found(r"non2xx (\d+)"))
    requests = int(found(r"(\d+) requests in"))
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non2xx": non2xx, "requests": requests}


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response from a kept connection (the load generators' hand-written client)."""
    status = int((await reader.readline()).split(b" ", 2)[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)
