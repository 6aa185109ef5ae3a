"""Verification + normalization per source type, through the edge, in one run.

One ingest service, one source of each type, each driven by wrk with its
sample webhook (tests/fixtures/sources/) signed as its provider would. Sources
whose samples carry a provider event id answer every request after the first
as a duplicate: the work (verify, normalize, publish, ack) is the same.

    .venv/bin/python -m tests.bench.sources_bench
"""

from __future__ import annotations

import os


from plugins.manager import load_registry
from switchboard.cli.embedded import free_port
from switchboard.protojson import struct
from switchboard.v1 import ingest_pb2, ingest_pb2_grpc
from tests.bench.common import bench_env, grpc_channel, infrastructure, run_wrk, spawn, stop, wait_http
from tests.plugins.test_sources import CASES, sample

SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))


def main() -> None:
    registry = load_registry()
    results = {}
    with infrastructure() as (nats_url, database_url, scratch):
        port = free_port()
        env = bench_env(nats_url, database_url, scratch / "state", SWITCHBOARD_HTTP_PORT=str(port),
                        SWITCHBOARD_SOURCE_RATE="1000000000", SWITCHBOARD_SOURCE_BURST="1000000000")
        edge = spawn(["-m", "services.ingest"], env)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            with grpc_channel(env, "ingest") as channel:
                stub = ingest_pb2_grpc.IngestServiceStub(channel)
                for case in CASES:
                    source = stub.CreateSource(ingest_pb2.CreateSourceRequest(
                        tenant_id="ten_bench", name=case.type, type=case.type, secret=case.secret,
                        config=struct(case.config or {})), timeout=10).source
                    url = f"http://127.0.0.1:{port}/in/{source.id}"
                    plugin = registry.source(case.type)
                    body = sample(case.type)
                    headers = plugin.sign(body, case.secret, plugin.validate_config(case.config or {}), url)
                    run_wrk(url, body, headers, 1, CONNECTIONS)  # warm-up
                    results[case.type] = run_wrk(url, body, headers, SECONDS, CONNECTIONS)
        finally:
            stop(edge)

    print(f"\nsources benchmark: one edge process, wrk -t2 -c{CONNECTIONS} -d{SECONDS}s per source type, loopback")
    print(f"{'source type':<20}{'body B':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    for name, r in results.items():
        print(f"{name:<20}{len(sample(name)):>8}{r['rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
              f"{r['non2xx']:>10.0f}")


if __name__ == "__main__":
    main()
