"""The edge's CPU per webhook with and without a provider delivery id.

A generic source (HMAC-SHA256, 1 KB JSON) whose ``id_header`` names the
sender's delivery id; the ingest service alone on embedded NATS and
PostgreSQL. Three loads in turn: webhooks without a delivery id (no dedup
look-up), each with a new delivery id (look-up, publish, record), and the same
delivery ids again (answered duplicate). For each: req/s, and the CPU the edge
process and nats-server spent per webhook, read from /proc.

    .venv/bin/python -m tests.bench.ingest_dedup_bench     (BENCH_EVENTS=20000, BENCH_CONCURRENCY=32)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time

from switchboard.cli.embedded import free_port
from switchboard.protojson import struct
from switchboard.v1 import ingest_pb2, ingest_pb2_grpc
from tests.bench.common import (
    bench_env,
    command_cpu_seconds,
    cpu_seconds,
    grpc_channel,
    infrastructure,
    spawn,
    stop,
    wait_http,
)
from tests.bench.ingest_bench import one_kb_body
from tests.bench.loadgen import post_many

EVENTS = int(os.environ.get("BENCH_EVENTS", "20000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))


def main() -> None:
    body = one_kb_body()
    with infrastructure() as (nats_url, database_url, scratch):
        edge_port = free_port()
        env = bench_env(nats_url, database_url, scratch / "state", SWITCHBOARD_HTTP_PORT=str(edge_port))
        edge = spawn(["-m", "services.ingest"], env)
        try:
            wait_http(f"http://127.0.0.1:{edge_port}/healthz")
            with grpc_channel(env, "ingest") as channel:
                created = ingest_pb2_grpc.IngestServiceStub(channel).CreateSource(ingest_pb2.CreateSourceRequest(
                    tenant_id="ten_bench", name="bench", type="generic",
                    config=struct({"event_type_field": "type", "id_header": "x-delivery-id"})), timeout=10)
            url = f"http://127.0.0.1:{edge_port}/in/{created.source.id}"
            signed = {"content-type": "application/json",
                      "x-signature": hmac.new(created.secret.encode(), body, hashlib.sha256).hexdigest()}
            loads = {
                "no delivery id": lambda n: (body, signed),
                "new delivery ids": lambda n: (body, {**signed, "x-delivery-id": f"d-{n}"}),
                "the same ids again": lambda n: (body, {**signed, "x-delivery-id": f"d-{n}"}),
            }
            asyncio.run(post_many(url, lambda n: (body, {**signed, "x-delivery-id": f"warm-{n}"}), 2000, CONCURRENCY))
            results = {}
            for name, make in loads.items():
                edge_before, nats_before, started = cpu_seconds(edge.pid), command_cpu_seconds("nats-server"), \
                    time.perf_counter()
                statuses = asyncio.run(post_many(url, make, EVENTS, CONCURRENCY))
                elapsed = time.perf_counter() - started
                refused = sum(1 for s in statuses if s != 202)
                results[name] = (EVENTS / elapsed, (cpu_seconds(edge.pid) - edge_before) / EVENTS * 1e6,
                                 (command_cpu_seconds("nats-server") - nats_before) / EVENTS * 1e6, refused)
        finally:
            stop(edge)

    print(f"\ningest dedup benchmark: 1 KB JSON, {EVENTS} webhooks per load, {CONCURRENCY} connections, loopback")
    print(f"{'load':<22}{'req/s':>10}{'edge µs/webhook':>18}{'nats µs/webhook':>18}{'non-202':>10}")
    for name, (rps, edge_us, nats_us, refused) in results.items():
        print(f"{name:<22}{rps:>10.0f}{edge_us:>18.0f}{nats_us:>18.0f}{refused:>10}")


if __name__ == "__main__":
    main()
