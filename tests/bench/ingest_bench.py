"""POST /in/{source_id} (generic source, 1 KB JSON) next to the raw-ASGI floor (bare_app.py).

Both are one uvicorn process on uvloop with httptools, against the same
embedded NATS; nothing else of the platform runs. wrk drives each in turn,
three alternating rounds; every round is printed with the server process's
CPU per request, then the better of each. Target: the edge reaches at least
0.8 of the floor.

    make bench        (or: .venv/bin/python -m tests.bench.ingest_bench)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

from switchboard.cli.embedded import free_port
from switchboard.protojson import struct
from switchboard.v1 import ingest_pb2, ingest_pb2_grpc
from tests.bench.bare_app import ESSENTIAL_SECRET, UVICORN_ARGS
from tests.bench.common import bench_env, cpu_seconds, grpc_channel, infrastructure, run_wrk, spawn, stop, wait_http

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
FLOOR = "raw ASGI floor"
ESSENTIAL = "floor + essentials"
EDGE = "POST /in/{source_id}"


def one_kb_body() -> bytes:
    payload: dict[str, Any] = {"type": "order.created", "data": {"id": "ord_123", "note": ""}}
    payload["data"]["note"] = "x" * (1024 - len(json.dumps(payload)))
    body = json.dumps(payload).encode()
    assert len(body) == 1024
    return body


def main() -> None:
    body = one_kb_body()
    with infrastructure() as (nats_url, database_url, scratch):
        edge_port, bare_port, essential_port = free_port(), free_port(), free_port()
        env = bench_env(nats_url, database_url, scratch / "state", SWITCHBOARD_HTTP_PORT=str(edge_port))
        edge = spawn(["-m", "services.ingest"], env)
        bare = spawn(["-m", "uvicorn", "tests.bench.bare_app:app", "--port", str(bare_port), *UVICORN_ARGS], env)
        essential = spawn(["-m", "uvicorn", "tests.bench.bare_app:essential_app", "--port", str(essential_port),
                           *UVICORN_ARGS], env)
        try:
            wait_http(f"http://127.0.0.1:{edge_port}/healthz")
            wait_http(f"http://127.0.0.1:{bare_port}/publish")
            wait_http(f"http://127.0.0.1:{essential_port}/in/src_bench")
            with grpc_channel(env, "ingest") as channel:
                created = ingest_pb2_grpc.IngestServiceStub(channel).CreateSource(ingest_pb2.CreateSourceRequest(
                    tenant_id="ten_bench", name="bench", type="generic",
                    config=struct({"event_type_field": "type"})), timeout=10)
            signature = hmac.new(created.secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {"content-type": "application/json"}
            targets = {
                FLOOR: (f"http://127.0.0.1:{bare_port}/publish", headers, bare.pid),
                ESSENTIAL: (f"http://127.0.0.1:{essential_port}/in/src_bench",
                            {**headers, "x-signature": hmac.new(ESSENTIAL_SECRET, body, hashlib.sha256).hexdigest()},
                            essential.pid),
                EDGE: (f"http://127.0.0.1:{edge_port}/in/{created.source.id}",
                       {**headers, "x-signature": signature}, edge.pid),
            }
            # Warm both up, then alternating rounds; keep each one's best.
            for url, h, _ in targets.values():
                run_wrk(url, body, h, 2, CONNECTIONS)
            best: dict[str, dict[str, float]] = {}
            print(f"{'round':<8}{'route':<24}{'req/s':>10}{'CPU us/req':>12}")
            for round_number in range(1, ROUNDS + 1):
                for name, (url, h, pid) in targets.items():
                    cpu_before = cpu_seconds(pid)
                    result = run_wrk(url, body, h, SECONDS, CONNECTIONS)
                    requests = result["rps"] * SECONDS
                    result["cpu_us"] = (cpu_seconds(pid) - cpu_before) / requests * 1e6 if requests else 0.0
                    print(f"{round_number:<8}{name:<24}{result['rps']:>10.0f}{result['cpu_us']:>12.1f}", flush=True)
                    if name not in best or result["rps"] > best[name]["rps"]:
                        best[name] = result
        finally:
            stop(edge)
            stop(bare)
            stop(essential)

    print(f"\ningest benchmark: 1 KB JSON, wrk -t2 -c{CONNECTIONS} -d{SECONDS}s, best of {ROUNDS} rounds, loopback")
    print(f"{'route':<24}{'req/s':>10}{'CPU us/req':>12}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    for name, r in best.items():
        print(f"{name:<24}{r['rps']:>10.0f}{r['cpu_us']:>12.1f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
              f"{r['non2xx']:>10.0f}")
    ratio = best[EDGE]["rps"] / best[FLOOR]["rps"]
    print(f"edge / raw-ASGI floor = {ratio:.2f}  (target >= 0.80); "
          f"floor + essentials / floor = {best[ESSENTIAL]['rps'] / best[FLOOR]['rps']:.2f} (the ceiling of any edge); "
          f"edge / floor + essentials = {best[EDGE]['rps'] / best[ESSENTIAL]['rps']:.2f}")


if __name__ == "__main__":
    main()
