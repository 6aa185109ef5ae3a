"""The floor for steady load: the bare job of a webhook gateway, done the fastest way this stack can.

steady_bench.py measures what Switchboard costs per event at a steady rate.
This measures, with the same sender, receiver, CPU accounting, nats-server and
PostgreSQL, the least any gateway on this stack can cost: two processes and
nothing else.

- **edge**: raw ASGI on uvicorn with uvloop and httptools (as the edge); checks
  the sender's HMAC, publishes the body to a JetStream work queue with a
  message id, awaits the ack, answers 202 with the event id.
- **worker**: pulls the messages (switchboard.messaging.consume: long pull
  requests topped up as messages settle), POSTs each to the receiver over kept
  HTTP/1.1 connections written by hand, records the attempt in PostgreSQL (one
  INSERT, autocommit: "acked means stored"), acks.

No routing, no transforms, no AI, no analytics, no tenants: what is left when
everything that makes it a product is taken away. Switchboard's figures over
this floor's are what its pipeline costs; this floor's own figures are what a
target per event on this machine can never go below.

    .venv/bin/python -m tests.bench.floor_pipeline --rates 100,300,500,1000 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from tests.bench import bare_app
from tests.bench.common import read_response, tree_cpu_seconds
from tests.bench.steady_bench import free_port, percentile

SECRET = "floor-secret"
STREAM, SUBJECT = "BARE", "bare.events"  # bare_app's stream


# -- the edge (uvicorn tests.bench.floor_pipeline:edge_app) ------------------------------------------

async def edge_app(scope, receive, send) -> None:
    """bare_app's route with the sender's HMAC checked (its lifespan: the BARE stream)."""
    if scope["type"] == "lifespan":
        await bare_app._lifespan(receive, send)
        return
    body = await bare_app.read_body(receive)
    signature = next((v for k, v in scope["headers"] if k == b"x-signature"), b"")
    if not hmac.compare_digest(hmac.digest(SECRET.encode(), body, "sha256").hex().encode(), signature):
        await _answer(send, 401, b'{"error":"bad signature"}')
        return
    event_id = os.urandom(12).hex()
    assert bare_app._js is not None
    await bare_app._js.publish(SUBJECT, body, headers={"Nats-Msg-Id": event_id}, timeout=5)
    await _answer(send, 202, b'{"event_id":"%s"}' % event_id.encode())


async def _answer(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# -- the worker (its own process) ------------------------------------------------------------------------

class _Connections:
    """Kept HTTP/1.1 connections to the receiver, one request at a time each."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes, event_id: str) -> int:
        reader, writer = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        writer.write(b"POST %s HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                     b"x-switchboard-event-id: %s\r\n\r\n%s" % (path.encode(), self.host.encode(), self.port,
                                                              len(body), event_id.encode(), body))
        status, _ = await read_response(reader)
        self.idle.append((reader, writer))
        return status


async def _worker(nats_url: str, dsn: str, receiver_port: int) -> None:
    import nats
    from psycopg_pool import AsyncConnectionPool

    from switchboard.messaging import ACK, ConsumerSpec, consume, retry_in

    nc = await nats.connect(nats_url)
    pool = AsyncConnectionPool(dsn, min_size=4, max_size=16, kwargs={"autocommit": True}, open=False)
    await pool.open(wait=True)
    async with pool.connection() as conn:
        await conn.execute("""CREATE TABLE IF NOT EXISTS floor_attempts (
                                  event_id text PRIMARY KEY, status int NOT NULL, latency_ms float8 NOT NULL,
                                  at timestamptz NOT NULL DEFAULT now())""")
    receiver = _Connections("127.0.0.1", receiver_port)

    async def handle(msg):
        event_id = msg.headers["Nats-Msg-Id"]
        started = time.perf_counter()
        status = await receiver.post("/hook/0", msg.data, event_id)
        async with pool.connection() as conn:
            await conn.execute("INSERT INTO floor_attempts (event_id, status, latency_ms) VALUES (%s, %s, %s) "
                               "ON CONFLICT DO NOTHING", (event_id, status, (time.perf_counter() - started) * 1000))
        return ACK if status < 300 else retry_in(1.0)

    stopping = asyncio.Event()
    await consume(nc, ConsumerSpec(STREAM, "floor"), handle, concurrency=256, stopping=stopping)


def worker_main(config: str) -> None:
    import uvloop

    c = json.loads(config)
    uvloop.run(_worker(c["nats_url"], c["dsn"], c["receiver_port"]))


# -- the run -----------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> None:
    import httpx

    from switchboard.cli.embedded import EmbeddedNats, EmbeddedPostgres

    scratch = Path(tempfile.mkdtemp(prefix="sb-floor-"))
    nats_server = EmbeddedNats(scratch / "nats")
    postgres = EmbeddedPostgres(scratch / "postgres")
    processes: list[subprocess.Popen] = []
    try:
        nats_url = nats_server.start()
        dsn = postgres.start()
        receiver_port, edge_port = free_port(), free_port()
        python = sys.executable
        receiver = subprocess.Popen([python, "-m", "tests.bench.steady_bench", "_receiver", str(receiver_port)])
        edge = subprocess.Popen([python, "-m", "uvicorn", "tests.bench.floor_pipeline:edge_app", "--port",
                                 str(edge_port), *bare_app.UVICORN_ARGS],
                                env={**os.environ, "SWITCHBOARD_NATS_URL": nats_url})
        processes += [receiver, edge]
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{receiver_port}/_count", timeout=1)
                httpx.post(f"http://127.0.0.1:{edge_port}/in", content=b"{}", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        worker = subprocess.Popen([python, "-m", "tests.bench.floor_pipeline", "_worker", json.dumps(
            {"nats_url": nats_url, "dsn": dsn, "receiver_port": receiver_port})])
        processes.append(worker)
        assert nats_server.process is not None and postgres.process is not None
        roots = {edge.pid: "edge", worker.pid: "worker", nats_server.process.pid: "nats",
                 postgres.process.pid: "postgres", receiver.pid: "receiver"}
        time.sleep(2)
        print(f"floor pipeline up; {args.idle:.0f} s idle", flush=True)
        before, t0 = tree_cpu_seconds(roots), time.monotonic()
        time.sleep(args.idle)
        idle = {n: (v - before[n]) / (time.monotonic() - t0) for n, v in tree_cpu_seconds(roots).items()}
        rows = []
        for rate in args.rates:
            rows.append(_one_rate(rate, args, roots, idle, edge_port, receiver_port, scratch))
            print(f"  {rate}/s: {rows[-1]['total']:.2f} ms/event,"
                  f" p50/p99 {rows[-1]['p50']:.0f}/{rows[-1]['p99']:.0f} ms"
                  f", delivered {rows[-1]['delivered']}/{rows[-1]['accepted']}", flush=True)
        print("\n| steady rate | machine CPU per event | per process (ms/event) | 202 → receiver p50 / p90 / p99 "
              "| delivered / accepted |")
        print("| ---: | ---: | --- | ---: | ---: |")
        for r in rows:
            per = ", ".join(f"{n} {v:.2f}" for n, v in sorted(r["per"].items(), key=lambda i: -i[1]))
            print(f"| {r['rate']:,}/s | {r['total']:.2f} ms | {per}"
                  f" | {r['p50']:.0f} / {r['p90']:.0f} / {r['p99']:.0f} ms"
                  f" | {r['delivered']:,} / {r['accepted']:,} |")
        print("\nidle cost, ms of CPU per second: " + ", ".join(f"{n} {v * 1000:.1f}" for n, v in idle.items()))
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        nats_server.stop()
        postgres.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def _one_rate(rate: int, args: argparse.Namespace, roots: dict[int, str], idle: dict[str, float], edge_port: int,
              receiver_port: int, scratch: Path) -> dict:
    import httpx

    receiver_url = f"http://127.0.0.1:{receiver_port}"
    httpx.get(f"{receiver_url}/_reset", timeout=5)
    out = scratch / f"sent-{rate}.json"
    start_at = time.monotonic() + 1.0
    sender = subprocess.Popen([sys.executable, "-m", "tests.bench.steady_bench", "_sender", json.dumps({
        "url": f"http://127.0.0.1:{edge_port}/in", "secret": SECRET, "rate": rate, "seconds": args.seconds,
        "connections": 8, "start_at": start_at, "out": str(out)})])
    time.sleep(max(0.0, start_at - 0.05 - time.monotonic()))
    before, t0 = tree_cpu_seconds(roots), time.monotonic()
    sender.wait()
    sent = orjson.loads(out.read_bytes())
    acked = {event_id: t for event_id, t in zip(sent["ids"], sent["acked"]) if event_id}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if httpx.get(f"{receiver_url}/_count", timeout=5).json()["deliveries"] >= len(acked):
            break
        time.sleep(0.25)
    span = time.monotonic() - t0
    after = tree_cpu_seconds(roots)
    dump = httpx.get(f"{receiver_url}/_dump", timeout=30).json()
    first: dict[str, float] = {}
    for event_id, t in zip(dump["events"], dump["times"]):
        if event_id in acked:
            first.setdefault(event_id, t)
    latencies = sorted((t - acked[e]) * 1000 for e, t in first.items())
    per = {n: max(0.0, after[n] - before[n] - idle[n] * span) / max(len(acked), 1) * 1000 for n in roots.values()}
    return {"rate": rate, "accepted": len(acked), "delivered": len(first), "per": per, "total": sum(per.values()),
            "p50": percentile(latencies, 0.5), "p90": percentile(latencies, 0.9), "p99": percentile(latencies, 0.99)}


def main(argv: list[str]) -> None:
    if argv[:1] == ["_worker"]:
        worker_main(argv[1])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="100,300,500,1000", type=lambda t: [int(x) for x in t.split(",")])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle", type=float, default=10.0)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
