"""POST /in/{source_id} (generic source, 1 KB JSON) next to a bare publish-and-ack route.

Both are one uvicorn process on the same event loop and HTTP parser, against
the same embedded NATS; wrk drives each in turn, twice, and the better round
of each is printed. Target: the edge reaches at least 0.8 of the bare route.

    make bench        (or: .venv/bin/python -m tests.bench.ingest_bench)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import grpc

from switchboard.embedded import free_port
from switchboard.v1 import ingest_pb2, ingest_pb2_grpc
from tests.bench.common import bench_env, infrastructure, run_wrk, spawn, stop, wait_http

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))


def one_kb_body() -> bytes:
    payload = {"type": "order.created", "data": {"id": "ord_123", "note": ""}}
    payload["data"]["note"] = "x" * (1024 - len(json.dumps(payload)))
    body = json.dumps(payload).encode()
    assert len(body) == 1024
    return body


def main() -> None:
    body = one_kb_body()
    with infrastructure() as (nats_url, database_url, scratch):
        edge_port, bare_port = free_port(), free_port()
        env = bench_env(nats_url, database_url, scratch / "state", SWITCHBOARD_HTTP_PORT=str(edge_port))
        edge = spawn(["-m", "services.ingest"], env)
        bare = spawn(["-m", "uvicorn", "tests.bench.bare_app:app", "--port", str(bare_port), "--loop", "asyncio",
                      "--http", "httptools", "--no-access-log", "--log-level", "warning"], env)
        try:
            wait_http(f"http://127.0.0.1:{edge_port}/healthz")
            wait_http(f"http://127.0.0.1:{bare_port}/publish")
            with grpc.insecure_channel(f"127.0.0.1:{env['SWITCHBOARD_INGEST_GRPC_PORT']}") as channel:
                created = ingest_pb2_grpc.IngestServiceStub(channel).CreateSource(ingest_pb2.CreateSourceRequest(
                    tenant_id="ten_bench", name="bench", type="generic",
                    config_json=json.dumps({"event_type_field": "type"})), timeout=10)
            signature = hmac.new(created.secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {"content-type": "application/json"}
            targets = {
                "bare publish+ack": (f"http://127.0.0.1:{bare_port}/publish", headers),
                "POST /in/{source_id}": (f"http://127.0.0.1:{edge_port}/in/{created.source.id}",
                                         {**headers, "x-signature": signature}),
            }
            # Warm both up, then two alternating rounds; keep each one's best.
            for url, h in targets.values():
                run_wrk(url, body, h, 2, CONNECTIONS)
            best: dict[str, dict[str, float]] = {}
            for _ in range(2):
                for name, (url, h) in targets.items():
                    result = run_wrk(url, body, h, SECONDS, CONNECTIONS)
                    if name not in best or result["rps"] > best[name]["rps"]:
                        best[name] = result
        finally:
            stop(edge)
            stop(bare)

    print(f"\ningest benchmark: 1 KB JSON, wrk -t2 -c{CONNECTIONS} -d{SECONDS}s, best of 2 rounds, loopback")
    print(f"{'route':<24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    for name, r in best.items():
        print(f"{name:<24}{r['rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['non2xx']:>10.0f}")
    ratio = best["POST /in/{source_id}"]["rps"] / best["bare publish+ack"]["rps"]
    print(f"edge / bare = {ratio:.2f}  (target >= 0.80)")


if __name__ == "__main__":
    main()
