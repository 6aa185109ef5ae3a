"""10,000 events through the whole platform: ingest -> router -> delivery -> a loopback receiver.

Prints events/s (first send to last arrival) and the ingest-to-receiver
latency distribution. The platform runs as `switchboard up` does, every
service in its own process, on throwaway embedded NATS and PostgreSQL.

    make bench        (or: .venv/bin/python -m tests.bench.end_to_end_bench)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import statistics
import time

import httpx
import orjson

from switchboard.cli.embedded import free_port
from tests.bench.common import bench_env, infrastructure, spawn, stop, wait_http
from tests.bench.loadgen import post_many
from tests.platform_runner import Platform

EVENTS = int(os.environ.get("BENCH_EVENTS", "10000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))


async def send_all(url: str, secret: str, count: int = EVENTS, rate: float | None = None) -> tuple[float, float]:
    """Send ``count`` signed webhooks (at ``rate`` a second, or as fast as they go); returns (start, end)
    wall-clock times."""

    def make(n: int) -> tuple[bytes, dict[str, str]]:
        body = orjson.dumps({"type": "order.created", "n": n, "sent_at": time.time(), "pad": "x" * 900})
        return body, {"x-signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
                      "content-type": "application/json"}

    start = time.time()
    statuses = await post_many(url, make, count, CONCURRENCY, rate)
    failures = sum(1 for s in statuses if s != 202)
    if failures or len(statuses) != count:
        raise SystemExit(f"{failures} webhooks were not accepted")
    return start, time.time()


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1]


def main() -> None:
    with infrastructure() as (nats_url, database_url, scratch):
        receiver_port = free_port()
        env = bench_env(nats_url, database_url, scratch / "state", SWITCHBOARD_HTTP_PORT="0",
                        SWITCHBOARD_LOG_LEVEL="WARNING", SWITCHBOARD_LOG_FORMAT="text")
        receiver = spawn(["-m", "uvicorn", "tests.bench.receiver_app:app", "--port", str(receiver_port),
                          "--no-access-log", "--log-level", "warning"], env)
        platform = Platform(env)
        try:
            wait_http(f"http://127.0.0.1:{receiver_port}/stats")
            platform.start()
            with platform.client() as api:
                source = api.post("/v1/sources", json={"name": "bench"}).json()
                endpoint = api.post("/v1/endpoints", json={"url": f"http://127.0.0.1:{receiver_port}/hook"}).json()
                api.post("/v1/routes", json={"endpoint_ids": [endpoint["id"]]}).raise_for_status()
            start, sent = asyncio.run(send_all(f"{platform.edge_url}/in/{source['id']}", source["secret"]))
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                stats = httpx.get(f"http://127.0.0.1:{receiver_port}/stats", timeout=30).json()
                if len(stats["latencies_ms"]) >= EVENTS:
                    break
                time.sleep(0.5)
        finally:
            platform.stop()
            stop(receiver)

    latencies = stats["latencies_ms"]
    print(f"\nend-to-end benchmark: {EVENTS} events of ~1 KB, {CONCURRENCY} concurrent senders, loopback")
    print(f"  accepted:   {EVENTS / (sent - start):8.0f} events/s at the edge (202 = durable)")
    print(f"  delivered:  {len(latencies) / (stats['last'] - start):8.0f} events/s end to end "
          f"({len(latencies)} deliveries, {stats['unique']} unique webhook-ids)")
    print(f"  latency ingest -> receiver: p50 {percentile(latencies, 0.5):.1f} ms, "
          f"p90 {percentile(latencies, 0.9):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
          f"max {max(latencies):.1f} ms")


if __name__ == "__main__":
    main()
