"""Steady load, as a user sees it: `switchboard up` with its defaults, a sender at fixed rates.

The platform starts as a user starts it (`switchboard up`, embedded NATS and
PostgreSQL, logging at the default INFO, JSON, to a file); one generic source
(HMAC-SHA256 in x-signature), one match-all route to one endpoint or fanning
out to ten (one receiver, ten paths). Three kinds of process, each on its own:

- the sender keeps a steady rate of signed ~1 KB webhooks over 8 keep-alive
  connections (event i is sent at t0 + i/rate; a connection that is late sends
  at once), recording each request's send time, its 202's time and event id;
- the receiver records the arrival time of every delivery by its
  ``x-switchboard-event-id`` and path, answering 200 at once: a bare asyncio
  protocol with httptools' parser on uvloop (what uvicorn runs, without an
  ASGI layer: tens of µs per request, so it hardly competes for the cores);
- this process starts them, measures, and prints.

Per rate, one platform for every rate of an endpoint count (nothing restarted;
each rate drains before the next): events accepted (202), delivered within the
drain deadline after sending ends, the CPU every process of the platform tree
spent per event (``/proc/<pid>/stat``: each service, nats-server, the
postmaster and its children, the `switchboard up` supervisor, and the
receiver; not the sender), with the idle cost, measured before the load,
subtracted; the latency from the 202 to the receiver (CLOCK_MONOTONIC is one
clock for every process of the machine); and whether the backlog stayed
bounded: delivered trailing accepted by less than a second of traffic when
sending ends, and the sender keeping its schedule (an edge that cannot keep
up shows as the sender falling behind).

Prints the figures and asserts nothing. A rate whose backlog has not drained
``--drain`` + ``--settle-max`` seconds after its sending ended ends the
endpoint count's run (higher rates would only queue behind it).

    .venv/bin/python -m tests.bench.steady_bench [--rates 100,300] [--seconds 20] [--endpoints 1,10]

The per-source rate limit (500/s, burst 1,000, by default) is raised, as a
user sending more than that from one source would; every other setting is the
default.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tests.bench.common import machine_cpu_seconds, proc_table, read_response, root_owner

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROCESS_ORDER = ("ingest", "router", "delivery", "analytics", "auth", "ai", "nats", "postgres", "supervisor",
                 "receiver")
PAD = "x" * 960  # ~1 KB bodies


# -- the receiver (its own process) ---------------------------------------------

def receiver_main(port: int) -> None:
    import httptools
    import uvloop

    events: list[str] = []
    paths: list[str] = []
    times: list[float] = []
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"

    def as_json(value: object) -> bytes:
        body = orjson.dumps(value)
        return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body),
                                                                                                        body)

    class Receiver(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""
            self.event_id = b""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

        def on_message_begin(self) -> None:
            self.url, self.event_id = b"", b""

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            if name.lower() == b"x-switchboard-event-id":
                self.event_id = value

        def on_message_complete(self) -> None:
            now = time.monotonic()
            path = self.url.split(b"?", 1)[0]
            if path.startswith(b"/hook"):
                events.append(self.event_id.decode())
                paths.append(path.decode())
                times.append(now)
                self.transport.write(ok)
            elif path == b"/_count":
                self.transport.write(as_json({"deliveries": len(times)}))
            elif path == b"/_dump":
                self.transport.write(as_json({"events": events, "paths": paths, "times": times}))
            elif path == b"/_reset":
                events.clear()
                paths.clear()
                times.clear()
                self.transport.write(as_json({"reset": True}))
            else:
                self.transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Receiver, "127.0.0.1", port, backlog=2048)
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


# -- the sender (its own process) -----------------------------------------------

async def _send(url: str, secret: str, rate: float, seconds: float, connections: int, start_at: float) -> dict:
    host, port_path = url.removeprefix("http://").split(":", 1)
    port, path = int(port_path.split("/", 1)[0]), "/" + port_path.split("/", 1)[1]
    total = int(rate * seconds)
    key = secret.encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\ncontent-type: application/json\r\n"
            "content-length: %d\r\nx-signature: %s\r\n\r\n").encode()
    sent = [0.0] * total
    acked = [0.0] * total
    ids: list[str | None] = [None] * total
    statuses: dict[str, int] = {}
    indices = iter(range(total))

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for i in indices:  # shared by every connection: the next event due
            delay = start_at + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            body = orjson.dumps({"type": "order.created", "n": i, "pad": PAD})
            request = head % (len(body), hmac.digest(key, body, "sha256").hex().encode()) + body
            sent[i] = time.monotonic()
            try:
                writer.write(request)
                status, reply = await read_response(reader)
            except (OSError, IndexError, ValueError, asyncio.IncompleteReadError) as exc:
                statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
                writer.close()
                reader, writer = await connect()
                continue
            acked[i] = time.monotonic()
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status == 202:
                ids[i] = orjson.loads(reply)["event_id"]
        writer.close()

    streams = [await connect() for _ in range(connections)]
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    await asyncio.gather(*(connection(r, w) for r, w in streams))
    return {"start_at": start_at, "rate": rate, "sent": sent, "acked": acked, "ids": ids, "statuses": statuses}


def sender_main(config: str) -> None:
    import uvloop

    c = json.loads(config)
    result = uvloop.run(_send(c["url"], c["secret"], c["rate"], c["seconds"], c["connections"], c["start_at"]))
    Path(c["out"]).write_bytes(orjson.dumps(result))


# -- CPU from /proc ---------------------------------------------------------------

def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def service_of(process_name: str) -> str:
    """The service a process belongs to: ``delivery-2`` is delivery's second process."""
    service, _, index = process_name.rpartition("-")
    return service if service and index.isdigit() else process_name


@dataclass
class CpuSample:
    at: float
    by_process: dict[str, float]
    system: float  # of which in the kernel, every process together
    services: dict[str, int]
    # PostgreSQL's own processes by whom they serve: each service's connections, "background" for the rest.
    postgres_for: dict[str, float] = field(default_factory=dict)


# -- the platform ---------------------------------------------------------------

def user_env(state_dir: Path) -> dict[str, str]:
    """`switchboard up`'s defaults, but for what a benchmark on a shared machine must set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update({
        "SWITCHBOARD_STATE_DIR": str(state_dir),
        # Ports chosen at start: other work on this machine may hold the default ones.
        "SWITCHBOARD_HTTP_PORT": "0",
        # The receiver is on loopback; every other private address stays refused.
        "SWITCHBOARD_DESTINATION_ALLOWLIST": "127.0.0.0/8",
        # One source sends up to 2,000/s here: a user doing so raises the per-source limit (500/s by default).
        "SWITCHBOARD_SOURCE_RATE": "1000000",
        "SWITCHBOARD_SOURCE_BURST": "1000000",
    })
    for name in ("INGEST", "ROUTER", "AI", "DELIVERY", "AUTH", "ANALYTICS"):
        env[f"SWITCHBOARD_{name}_GRPC_PORT"] = "0"
        env[f"SWITCHBOARD_{name}_METRICS_PORT"] = "0"
    # Trying another setting: BENCH_SWITCHBOARD_X=v runs the benchmark with SWITCHBOARD_X=v.
    env.update({k.removeprefix("BENCH_"): v for k, v in os.environ.items() if k.startswith("BENCH_SWITCHBOARD_")})
    return env


class Up:
    """`switchboard up` in a subprocess, its output (every service's log) going to a file, as `> up.log` would."""

    def __init__(self, scratch: Path) -> None:
        self.state_dir = scratch / "state"
        self.log_path = scratch / "switchboard-up.log"
        self.env = user_env(self.state_dir)
        self.process: subprocess.Popen | None = None
        self.edge_url = ""

    def start(self, timeout: float = 120.0) -> None:
        script = Path(sys.executable).parent / "switchboard"
        command = [str(script), "up"] if script.exists() else [sys.executable, "-m", "switchboard.cli", "up"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if "Press Ctrl-C to stop." in text:
                edge = re.search(r"edge:\s+(http://\S+)", text)
                assert edge is not None, text
                self.edge_url = edge.group(1)
                return
            if self.process.poll() is not None:
                raise SystemExit(f"switchboard up exited {self.process.returncode}:\n{text[-4000:]}")
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"switchboard up did not come up in {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def admin_key(self) -> str:
        return (self.state_dir / "admin.key").read_text().strip()

    def services(self) -> dict[str, int]:
        return {p.stem: pid for p in (self.state_dir / "run").glob("*.pid") if (pid := _read_pid(p))}

    def nats_url(self) -> str:
        pid = _read_pid(self.state_dir / "nats" / "nats-server.pid")
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        return f"nats://127.0.0.1:{args[args.index('--port') + 1]}"

    def postgres_clients(self) -> dict[int, str]:
        """PostgreSQL backend pid -> the service on the other end (its connection's application_name)."""
        import psycopg

        lines = (self.state_dir / "postgres" / "postmaster.pid").read_text().splitlines()
        with psycopg.connect(f"postgresql://switchboard@127.0.0.1:{lines[3]}/switchboard",
                             application_name="bench", autocommit=True) as conn:
            rows = conn.execute("SELECT pid, application_name FROM pg_stat_activity").fetchall()
        return {pid: name.removeprefix("switchboard-") for pid, name in rows if name}

    def cpu(self, receiver_pid: int) -> CpuSample:
        """CPU seconds so far of every process of the platform's tree, by process (each service, nats,
        postgres: the postmaster, its children and, through its cutime, those it has reaped; the supervisor),
        and of the receiver."""
        assert self.process is not None
        services = self.services()
        # A service's further processes (delivery-2, ...) count as that service.
        roots = {self.process.pid: "supervisor", receiver_pid: "receiver",
                 **{pid: service_of(name) for name, pid in services.items()}}
        if (nats := _read_pid(self.state_dir / "nats" / "nats-server.pid")) is not None:
            roots[nats] = "nats"
        if (postmaster := _read_pid(self.state_dir / "postgres" / "postmaster.pid")) is not None:
            roots[postmaster] = "postgres"
        table = proc_table()
        owner_of = root_owner(table, roots)

        clients = self.postgres_clients()
        used = {name: 0.0 for name in PROCESS_ORDER}
        postgres_for: dict[str, float] = {}
        system = 0.0
        for pid, (_, own, children, (stime, cstime)) in table.items():
            name = owner_of(pid)
            if name == "postgres":
                client = clients.get(pid, "background")
                postgres_for[client] = postgres_for.get(client, 0.0) + own + children
            if name is not None:
                # Children the supervisor reaped are other roots (counted while they lived); a postmaster's
                # reaped children are backends and workers that ended meanwhile.
                reaped = name != "supervisor"
                used[name] = used.get(name, 0.0) + own + (children if reaped else 0.0)
                system += (stime + (cstime if reaped else 0)) / CLK_TCK
        return CpuSample(time.monotonic(), used, system, services, postgres_for)


async def _backlog(nats_url: str) -> dict[str, int]:
    """Messages not yet handled by each consumer: pending plus delivered and not acknowledged."""
    import nats

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        backlog = {}
        for stream, durable in (("EVENTS", "router"), ("DELIVERIES", "delivery"), ("ATTEMPTS", "analytics")):
            info = await js.consumer_info(stream, durable)
            backlog[durable] = (info.num_pending or 0) + (info.num_ack_pending or 0)
        return backlog
    finally:
        await nc.close()


def backlog(nats_url: str) -> dict[str, int]:
    try:
        return asyncio.run(_backlog(nats_url))
    except Exception as exc:
        print(f"  (consumer backlog unavailable: {exc!r})", flush=True)
        return {}


# -- one run --------------------------------------------------------------------

def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Bench:
    up: Up
    receiver: subprocess.Popen
    receiver_url: str
    source_id: str
    secret: str
    endpoints: int
    args: argparse.Namespace
    scratch: Path
    idle_per_s: dict[str, float] = field(default_factory=dict)

    def receiver_get(self, path: str) -> dict:
        import httpx

        return httpx.get(f"{self.receiver_url}{path}", timeout=60).json()

    def drained(self, expected: int) -> bool:
        return (self.receiver_get("/_count")["deliveries"] >= expected
                and not any(backlog(self.up.nats_url()).values()))

    def send(self, rate: float, seconds: float, tag: str) -> tuple[subprocess.Popen, float, Path]:
        out = self.scratch / f"sent-{self.endpoints}-{tag}.json"
        start_at = time.monotonic() + 2.0  # the sender's imports and connections before t0
        config = {"url": f"{self.up.edge_url}/in/{self.source_id}", "secret": self.secret, "rate": rate,
                  "seconds": seconds, "connections": self.args.connections, "start_at": start_at, "out": str(out)}
        sender = subprocess.Popen([sys.executable, "-m", "tests.bench.steady_bench", "_sender", json.dumps(config)],
                                  stdin=subprocess.DEVNULL)
        return sender, start_at, out

    def warm_up(self) -> None:
        """A short load first (not reported): connection pools, caches, first-use imports."""
        sender, _, out = self.send(50, 3, "warm-up")
        sender.wait()
        accepted = sum(1 for i in orjson.loads(out.read_bytes())["ids"] if i)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.drained(accepted * self.endpoints):
            time.sleep(0.5)

    def measure_idle(self, seconds: float) -> None:
        time.sleep(3)  # what the warm-up left (analytics batches, WAL) settles
        before = self.up.cpu(self.receiver.pid)
        time.sleep(seconds)
        after = self.up.cpu(self.receiver.pid)
        span = after.at - before.at
        self.idle_per_s = {n: max(0.0, after.by_process[n] - before.by_process[n]) / span for n in PROCESS_ORDER}

    def run(self, rate: int) -> dict:
        args = self.args
        self.receiver_get("/_reset")
        log_before = self.up.log_path.stat().st_size
        sender, start_at, out = self.send(rate, args.seconds, str(rate))
        time.sleep(max(0.0, start_at - 0.05 - time.monotonic()))
        cpu_before = self.up.cpu(self.receiver.pid)
        busy_before = machine_cpu_seconds()
        mine_before = os.times()
        sender.wait()
        sending_ended = time.monotonic()
        backlog_at_end = backlog(self.up.nats_url())
        sent = orjson.loads(out.read_bytes())
        ids: list[str | None] = sent["ids"]
        acked_at = {event_id: t for event_id, t in zip(ids, sent["acked"]) if event_id}
        accepted = len(acked_at)
        expected = accepted * self.endpoints
        deadline = sending_ended + args.drain
        drained = False
        while time.monotonic() < deadline:
            if self.drained(expected):
                drained = True
                break
            time.sleep(0.25)
        cpu_after = self.up.cpu(self.receiver.pid)
        busy = machine_cpu_seconds() - busy_before
        mine = os.times()
        # The sender (reaped: its CPU is now this process's children's) and this process.
        sender_cpu = mine.children_user + mine.children_system - mine_before.children_user - mine_before.children_system
        own_cpu = mine.user + mine.system - mine_before.user - mine_before.system
        log_bytes = self.up.log_path.stat().st_size - log_before
        dump = self.receiver_get("/_dump")
        if not drained:  # not timed: the next rate starts on an empty platform, or not at all
            late_deadline = time.monotonic() + args.settle_max
            while time.monotonic() < late_deadline and not self.drained(expected):
                time.sleep(1)

        # Deliveries: first arrival of each (event, endpoint) of this run's events, within the deadline.
        first: dict[tuple[str, str], float] = {}
        duplicates = 0
        for event_id, path, t in zip(dump["events"], dump["paths"], dump["times"]):
            if event_id not in acked_at or t > deadline:
                continue
            if (event_id, path) in first:
                duplicates += 1
            else:
                first[(event_id, path)] = t
        latencies = sorted((t - acked_at[event_id]) * 1000 for (event_id, _), t in first.items())
        arrivals = sorted(first.values())
        acks = sorted(acked_at.values())
        # The backlog: how far deliveries trail the accepted events, in seconds of traffic, at each second
        # of the window and when sending ended.
        trail = []
        for k in range(1, int(args.seconds) + 1):
            t = start_at + k
            trail.append((_count_le(acks, t) - _count_le(arrivals, t) / self.endpoints) / rate)
        trail_end = (accepted - _count_le(arrivals, sending_ended) / self.endpoints) / rate
        sends = sent["sent"]
        behind_s = max((s - (start_at + i / rate) for i, s in enumerate(sends) if s), default=0.0)
        ingest_ms = sorted((a - s) * 1000 for s, a in zip(sends, sent["acked"]) if a)

        span = cpu_after.at - cpu_before.at
        used = {n: cpu_after.by_process[n] - cpu_before.by_process[n] for n in PROCESS_ORDER}
        net = {n: used[n] - self.idle_per_s.get(n, 0.0) * span for n in PROCESS_ORDER}
        restarted = sorted(n for n, pid in cpu_after.services.items() if cpu_before.services.get(n) != pid)
        per_event_ms = {n: net[n] / max(accepted, 1) * 1000 for n in PROCESS_ORDER}
        # Gross (idle not subtracted): which service's statements PostgreSQL spent its time on.
        postgres_ms = {n: (v - cpu_before.postgres_for.get(n, 0.0)) / max(accepted, 1) * 1000
                       for n, v in cpu_after.postgres_for.items()}
        return {
            "rate": rate, "accepted": accepted, "requested": len(ids), "statuses": sent["statuses"],
            "delivered": len(first), "expected": expected, "duplicates": duplicates, "drained": drained,
            "per_event_ms": per_event_ms, "postgres_ms": postgres_ms, "machine_ms": sum(per_event_ms.values()),
            "gross_machine_ms": sum(used.values()) / max(accepted, 1) * 1000,
            "busy_ms": busy / max(accepted, 1) * 1000, "cpu_window_s": span,
            "system_share": (cpu_after.system - cpu_before.system) / max(1e-9, sum(used.values())),
            "sender_ms": sender_cpu / max(accepted, 1) * 1000,
            # What else ran on the machine meanwhile (other people's work), in CPU seconds per second.
            "other_load": (busy - sum(used.values()) - sender_cpu - own_cpu) / span,
            "p50": percentile(latencies, 0.5), "p90": percentile(latencies, 0.9), "p99": percentile(latencies, 0.99),
            "max": latencies[-1] if latencies else float("nan"),
            "ingest_p50": percentile(ingest_ms, 0.5), "ingest_p99": percentile(ingest_ms, 0.99),
            "trail_end_s": trail_end, "trail_max_s": max(trail, default=0.0), "behind_s": behind_s,
            "achieved": accepted / max(1e-9, (max(acks) - start_at)) if acks else 0.0,
            "backlog_at_end": backlog_at_end, "log_bytes_per_event": log_bytes / max(accepted, 1),
            "restarted": restarted,
            "bounded": trail_end < 1.0 and behind_s < 1.0 and accepted == len(ids),
        }


def _count_le(ordered: list[float], t: float) -> int:
    return bisect.bisect_right(ordered, t)


def run_endpoint_count(endpoints: int, args: argparse.Namespace) -> tuple[dict[str, float], list[dict], list[str]]:
    import httpx

    scratch = Path(tempfile.mkdtemp(prefix="sb-steady-"))
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-m", "tests.bench.steady_bench", "_receiver", str(port)],
                                stdin=subprocess.DEVNULL)
    up = Up(scratch)
    results: list[dict] = []
    notes: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/_count", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        up.start()
        with httpx.Client(base_url=up.edge_url, headers={"Authorization": f"Bearer {up.admin_key}"},
                          timeout=30) as api:
            source = api.post("/v1/sources", json={"name": "steady", "config": {"event_type_field": "type"}})
            source.raise_for_status()
            endpoint_ids = []
            for k in range(endpoints):
                reply = api.post("/v1/endpoints", json={"url": f"http://127.0.0.1:{port}/hook/{k}"})
                reply.raise_for_status()
                endpoint_ids.append(reply.json()["id"])
            api.post("/v1/routes", json={"name": "everything", "endpoint_ids": endpoint_ids}).raise_for_status()
        bench = Bench(up, receiver, f"http://127.0.0.1:{port}", source.json()["id"], source.json()["secret"],
                      endpoints, args, scratch)
        print(f"\n{endpoints} endpoint(s): platform up at {up.edge_url}; warming up, then {args.idle:.0f} s idle",
              flush=True)
        bench.warm_up()
        bench.measure_idle(args.idle)
        for rate in args.rates:
            print(f"  {rate}/s for {args.seconds:.0f} s ...", flush=True)
            result = bench.run(rate)
            results.append(result)
            print(f"  {rate}/s: accepted {result['accepted']}, delivered {result['delivered']}/{result['expected']}, "
                  f"p50 {result['p50']:.0f} ms, p99 {result['p99']:.0f} ms, "
                  f"machine {result['machine_ms']:.2f} ms/event", flush=True)
            if not bench.drained(result["expected"]):
                notes.append(f"{endpoints} endpoint(s): the backlog of {rate}/s had not drained "
                             f"{args.drain + args.settle_max:.0f} s after sending ended; higher rates not run")
                break
        return bench.idle_per_s, results, notes
    finally:
        up.stop()
        receiver.terminate()
        receiver.wait(10)
        if args.keep:
            print(f"  kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


# -- report ---------------------------------------------------------------------

def print_report(endpoints: int, idle: dict[str, float], results: list[dict], args: argparse.Namespace) -> None:
    label = "1 endpoint" if endpoints == 1 else f"{endpoints} endpoints (one route fanning out to all)"
    print(f"\n### {label}: {args.seconds:.0f} s per rate, {args.connections} sender connections\n")
    print("| steady rate | machine CPU per event | per process (ms/event) | 202 → receiver p50 / p90 / p99 "
          "| delivered / accepted | backlog bounded |")
    print("| ---: | ---: | --- | ---: | ---: | --- |")
    for r in results:
        top = sorted(((v, n) for n, v in r["per_event_ms"].items() if v >= 0.005), reverse=True)
        per_process = ", ".join(f"{n} {v:.2f}" for v, n in top)
        deliveries = r["accepted"] * endpoints
        delivered = f"{r['delivered']:,} / {deliveries:,}" + ("" if endpoints == 1 else f" ({r['accepted']:,} events)")
        if r["bounded"]:
            bounded = f"yes (trails {r['trail_end_s']:.2f} s)"
        elif r["behind_s"] >= 1.0 or r["accepted"] < r["requested"]:
            bounded = f"no: the edge fell behind the sender by {r['behind_s']:.1f} s"
        else:
            bounded = f"no: trails {r['trail_end_s']:.1f} s at the end"
        print(f"| {r['rate']:,}/s | {r['machine_ms']:.2f} ms | {per_process} | "
              f"{r['p50']:.0f} / {r['p90']:.0f} / {r['p99']:.0f} ms | {delivered} | {bounded} |")

    print(f"\nµs of CPU per event, by process (idle cost subtracted; per delivery: divide by {endpoints})\n")
    print("| rate | " + " | ".join(PROCESS_ORDER) + " | platform | sum | gross | machine-wide |")
    print("| ---: |" + " ---: |" * (len(PROCESS_ORDER) + 4))
    for r in results:
        platform_us = (r["machine_ms"] - r["per_event_ms"]["receiver"]) * 1000
        print(f"| {r['rate']:,}/s | " + " | ".join(f"{r['per_event_ms'][n] * 1000:.0f}" for n in PROCESS_ORDER)
              + f" | {platform_us:.0f} | {r['machine_ms'] * 1000:.0f} | {r['gross_machine_ms'] * 1000:.0f} "
              f"| {r['busy_ms'] * 1000:.0f} |")
    print("\nidle cost before the load, ms of CPU per second: "
          + ", ".join(f"{n} {idle.get(n, 0.0) * 1000:.1f}" for n in PROCESS_ORDER)
          + f" (sum {sum(idle.values()) * 1000:.1f})")
    print("platform: every process but the receiver; sum: with the receiver; gross: the sum without subtracting "
          "the idle cost; machine-wide: every busy core from /proc/stat, the sender and this process included\n")
    for r in results:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
        print(f"- {r['rate']}/s: sent {r['requested']:,} ({statuses}), accepted at {r['achieved']:.0f}/s; "
              f"send → 202 p50 {r['ingest_p50']:.1f} ms, p99 {r['ingest_p99']:.1f} ms; sender at most "
              f"{r['behind_s'] * 1000:.0f} ms behind schedule; deliveries trailing by at most "
              f"{r['trail_max_s']:.2f} s of traffic; consumer backlog when sending ended {r['backlog_at_end']}; "
              f"202 → receiver max {r['max']:.0f} ms; {'drained' if r['drained'] else 'NOT drained'} "
              f"within {args.drain:.0f} s (CPU window {r['cpu_window_s']:.1f} s); {r['duplicates']} duplicate "
              f"deliveries; {r['log_bytes_per_event']:.0f} log bytes per event; the sender {r['sender_ms']:.2f} ms "
              f"per event; other work on the machine meanwhile: {r['other_load']:.2f} cores; "
              f"{r['system_share']:.0%} of the measured CPU in the kernel; PostgreSQL's ms per event by client: "
              + ", ".join(f"{n} {v:.2f}" for n, v in sorted(r["postgres_ms"].items(), key=lambda i: -i[1])
                          if v >= 0.005)
              + (f"; RESTARTED: {', '.join(r['restarted'])}" if r["restarted"] else ""))


def parse_args(argv: list[str]) -> argparse.Namespace:
    def numbers(text: str) -> list[int]:
        return [int(n) for n in text.split(",") if n.strip()]

    parser = argparse.ArgumentParser(prog="python -m tests.bench.steady_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=numbers, default=[100, 300, 500, 1000, 2000], help="events/s, e.g. 100,300")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of sending per rate")
    parser.add_argument("--endpoints", type=numbers, default=[1, 10], help="endpoint counts, one platform each")
    parser.add_argument("--connections", type=int, default=8, help="the sender's keep-alive connections")
    parser.add_argument("--drain", type=float, default=60.0,
                        help="seconds after sending ends within which deliveries count (and CPU is measured)")
    parser.add_argument("--settle-max", type=float, default=240.0,
                        help="further seconds to wait for a backlog to clear before the next rate")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured before the load")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (state, logs)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    reports = []
    notes: list[str] = []
    for endpoints in args.endpoints:
        idle, results, more = run_endpoint_count(endpoints, args)
        reports.append((endpoints, idle, results))
        notes += more
    print(f"\nsteady load: `switchboard up` with its defaults (INFO logs to a file), one generic source, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for endpoints, idle, results in reports:
        print_report(endpoints, idle, results, args)
    for note in notes:
        print(f"\nnote: {note}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_receiver"]:
        receiver_main(int(sys.argv[2]))
    elif sys.argv[1:2] == ["_sender"]:
        sender_main(sys.argv[2])
    else:
        main(sys.argv[1:])
