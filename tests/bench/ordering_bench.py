"""Ordered delivery per key against the same endpoint unordered: deliveries/s and CPU per delivery.

Two runs through the whole platform (edge, router, delivery in their own
processes, one fast loopback receiver, tests/bench/fast_receiver.py), each to a
fresh source routed to one endpoint: first unordered, then with
``ordering: "per_key"`` on ``$.data.object.customer``. The events name
BENCH_ORDERING_KEYS customers (default 1,000) in turn, BENCH_ORDERING_EVENTS
of them (default 6,000), sent as fast as they are accepted. Deliveries/s is
first send to last arrival; CPU is per delivery, per process.

    .venv/bin/python -m tests.bench.ordering_bench
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time

import httpx
import orjson

from tests.bench.common import infrastructure, machine_cpu_seconds, platform_and_receiver
from tests.bench.delivery_bench import process_cpu
from tests.bench.loadgen import post_many
from tests.platform_runner import Platform

EVENTS = int(os.environ.get("BENCH_ORDERING_EVENTS", "6000"))
KEYS = int(os.environ.get("BENCH_ORDERING_KEYS", "1000"))
CONNECTIONS = 32


async def send_all(url: str, secret: str) -> tuple[float, float]:
    """Every event, signed, each naming customer n % KEYS; returns (start, end) wall-clock times."""

    def make(n: int) -> tuple[bytes, dict[str, str]]:
        body = orjson.dumps({"type": "customer.updated", "n": n, "sent_at": time.time(),
                             "data": {"object": {"customer": f"cus_{n % KEYS}"}}, "pad": "x" * 400})
        return body, {"x-signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
                      "content-type": "application/json"}

    start = time.time()
    statuses = await post_many(url, make, EVENTS, CONNECTIONS)
    if sum(1 for s in statuses if s != 202) or len(statuses) != EVENTS:
        raise SystemExit("some webhooks were not accepted")
    return start, time.time()


def run(api: httpx.Client, platform: Platform, receiver: str, receiver_pid: int, options: dict) -> dict:
    httpx.post(f"{receiver}/reset").raise_for_status()
    source = api.post("/v1/sources", json={"name": f"ordering-{len(options)}"}).json()
    endpoint = api.post("/v1/endpoints", json={"url": f"{receiver}/hook", "options": options})
    endpoint.raise_for_status()
    api.post("/v1/routes", json={"source_id": source["id"], "endpoint_ids": [endpoint.json()["id"]]}
             ).raise_for_status()
    pids = {**platform.pids(), "receiver": receiver_pid}
    cpu_before, machine_before = process_cpu(pids), machine_cpu_seconds()
    start, _ = asyncio.run(send_all(f"{platform.edge_url}/in/{source['id']}", source["secret"]))
    deadline = time.monotonic() + 900
    while httpx.get(f"{receiver}/count", timeout=30).json()["deliveries"] < EVENTS:
        if time.monotonic() > deadline:
            raise SystemExit("not every delivery arrived")
        time.sleep(0.2)
    stats = httpx.get(f"{receiver}/stats", timeout=30).json()
    cpu_us = {name: (used - cpu_before[name]) / EVENTS * 1e6 for name, used in process_cpu(pids).items()}
    cpu_us["machine"] = (machine_cpu_seconds() - machine_before) / EVENTS * 1e6
    return {"mode": "per_key" if options else "unordered", "per_s": EVENTS / (stats["last"] - start),
            "unique": stats["unique"], "cpu_us": cpu_us}


def main() -> None:
    results = []
    with infrastructure() as (nats_url, database_url, scratch), \
            platform_and_receiver(nats_url, database_url, scratch) as (platform, receiver, receiver_pid), \
            platform.client() as api:
        for options in ({}, {"ordering": "per_key", "ordering_key": "$.data.object.customer"}):
            results.append(run(api, platform, receiver, receiver_pid, options))

    print(f"\nordering benchmark: {EVENTS} events over {KEYS} keys to one endpoint, one loopback receiver, "
          "every service in its own process")
    names = ["ingest", "router", "delivery", "nats", "postgres", "receiver", "sender", "machine"]
    print(f"{'mode':>10} {'deliveries/s':>13} {'unique ids':>10}")
    for r in results:
        print(f"{r['mode']:>10} {r['per_s']:>13.0f} {r['unique']:>10}")
    print("\nCPU µs per delivery (machine: every process, the sender, NATS and PostgreSQL included)")
    print(f"{'mode':>10} " + " ".join(f"{n:>9}" for n in names))
    for r in results:
        print(f"{r['mode']:>10} " + " ".join(f"{r['cpu_us'].get(n, 0.0):>9.0f}" for n in names))
        assert r["unique"] == EVENTS, "every delivery arrives (once per webhook-id)"


if __name__ == "__main__":
    main()
