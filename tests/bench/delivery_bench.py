"""Deliveries/s end to end with 1, 10 and 100 endpoints, and latency percentiles.

Each run sends events to a fresh source whose route fans every event out to N
endpoints (all on one fast loopback receiver, tests/bench/fast_receiver.py), so every run makes the same
number of deliveries: BENCH_DELIVERIES (default 6,000). Deliveries/s is first
send to last arrival; latency is from the sender's timestamp to arrival. Sent
as fast as they go, the events outrun delivery and the latency is queueing;
so "paced" runs also send at fixed rates below capacity (BENCH_PACED_RATES
deliveries/s, default 1,000 and 1,500, 10 endpoints) for the latency a
receiver sees under steady load.

Then the delivery service alone: it is paused (SIGSTOP) while the events are
sent and routed, so its queue fills, and resumed; "drain" is the rate at
which it empties the queue to the receiver, with only the receiver (and
NATS and PostgreSQL) competing for the CPU.

    .venv/bin/python -m tests.bench.delivery_bench
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import nats

from tests.bench.common import (command_cpu_seconds, cpu_seconds, infrastructure, machine_cpu_seconds,
                                platform_and_receiver, postgres_cpu_by_application)
from tests.bench.end_to_end_bench import percentile, send_all
from tests.platform_runner import Platform

DELIVERIES = int(os.environ.get("BENCH_DELIVERIES", "6000"))
FAN_OUTS = tuple(int(n) for n in os.environ.get("BENCH_ENDPOINTS", "1,10,100").split(","))
# Latency at a load below capacity: deliveries/s the sender paces itself to (10 endpoints).
PACED_RATES = tuple(int(n) for n in os.environ.get("BENCH_PACED_RATES", "1000,1500").split(",") if n)
PACED_ENDPOINTS = 10


async def queued_deliveries(nats_url: str) -> int:
    nc = await nats.connect(nats_url)
    try:
        return (await nc.jetstream().stream_info("DELIVERIES")).state.messages
    finally:
        await nc.close()


def process_cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each service, of NATS, PostgreSQL, the receiver and this process (the sender)."""
    used = {name: cpu_seconds(pid) for name, pid in pids.items()}
    used["nats"] = command_cpu_seconds("nats-server")
    used["postgres"] = command_cpu_seconds("postgres")
    used["sender"] = sum(os.times()[:2])
    return used


def profile(pids: dict[str, int]) -> subprocess.Popen | None:
    """With BENCH_PROFILE=<service>, a py-spy profile of that service while the run lasts (/tmp/<service>-*.txt)."""
    service = os.environ.get("BENCH_PROFILE")
    py_spy = shutil.which("py-spy", path=f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}")
    if not service or not py_spy:
        return None
    return subprocess.Popen([py_spy, "record", "-p", str(pids[service]), "-o", f"/tmp/{service}-{time.time():.0f}.txt",
                             "-f", "raw", "-r", "100", "--gil"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run(api: httpx.Client, platform: Platform, receiver: str, endpoints: int, nats_url: str = "",
        drain: bool = False, receiver_pid: int = 0, rate: int | None = None) -> dict:
    """One run of DELIVERIES deliveries: as fast as they go, paced at ``rate`` deliveries/s, or drained."""
    source = api.post("/v1/sources", json={"name": f"bench-{endpoints}"}).json()
    ids = [api.post("/v1/endpoints", json={"url": f"{receiver}/hook?e={n}"}).json()["id"] for n in range(endpoints)]
    for chunk in range(0, endpoints, 50):  # a route names at most 50 endpoints
        api.post("/v1/routes", json={"source_id": source["id"], "endpoint_ids": ids[chunk:chunk + 50]}
                 ).raise_for_status()
    httpx.post(f"{receiver}/reset").raise_for_status()
    events = DELIVERIES // endpoints
    expected = events * endpoints
    pids = platform.pids()
    delivery = pids["delivery"]
    pids["receiver"] = receiver_pid
    cpu_before = process_cpu(pids)
    database_url = platform.env["SWITCHBOARD_DATABASE_URL"]
    postgres_before = postgres_cpu_by_application(database_url)
    machine_before = machine_cpu_seconds()
    if drain:
        os.kill(delivery, signal.SIGSTOP)
    profiler = None if drain else profile(pids)  # end to end: the routing too
    start, sent = asyncio.run(send_all(f"{platform.edge_url}/in/{source['id']}", source["secret"], events,
                                       rate / endpoints if rate else None))
    if drain:
        while asyncio.run(queued_deliveries(nats_url)) < expected:
            time.sleep(0.2)
        start = time.time()
        os.kill(delivery, signal.SIGCONT)
        profiler = profile(pids)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if httpx.get(f"{receiver}/count", timeout=30).json()["deliveries"] >= expected:
            break
        time.sleep(0.5)
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)
    stats = httpx.get(f"{receiver}/stats", timeout=30).json()
    latencies = stats["latencies_ms"]
    # Where the CPU went, per delivery: each service, and the whole machine (NATS,
    # PostgreSQL, the receiver and the sender included).
    cpu_us = {name: (used - cpu_before[name]) / expected * 1e6 for name, used in process_cpu(pids).items()}
    cpu_us["machine"] = (machine_cpu_seconds() - machine_before) / expected * 1e6
    postgres_us = {name: (used - postgres_before.get(name, 0.0)) / expected * 1e6
                   for name, used in postgres_cpu_by_application(database_url).items()}
    mode = "drain" if drain else f"paced {rate}/s" if rate else "end to end"
    return {"endpoints": endpoints, "mode": mode, "events": events, "deliveries": len(latencies),
            "unique": stats["unique"], "per_s": len(latencies) / (stats["last"] - start),
            "accepted_per_s": events / (sent - start),
            "p50": percentile(latencies, 0.5), "p90": percentile(latencies, 0.9),
            "p99": percentile(latencies, 0.99), "cpu_us": cpu_us, "postgres_us": postgres_us}


def main() -> None:
    results = []
    with infrastructure() as (nats_url, database_url, scratch), \
            platform_and_receiver(nats_url, database_url, scratch, SWITCHBOARD_LOG_LEVEL="WARNING") as (
                platform, receiver, receiver_pid), \
            platform.client() as api:
        for endpoints in FAN_OUTS:
            results.append(run(api, platform, receiver, endpoints, receiver_pid=receiver_pid))
        for rate in PACED_RATES:
            results.append(run(api, platform, receiver, PACED_ENDPOINTS, receiver_pid=receiver_pid, rate=rate))
        for endpoints in (FAN_OUTS[0], FAN_OUTS[-1]):
            results.append(run(api, platform, receiver, endpoints, nats_url, drain=True, receiver_pid=receiver_pid))

    print(f"\ndelivery benchmark: {DELIVERIES} deliveries per run, one loopback receiver, every service in its "
          "own process (2 cores shared with NATS, PostgreSQL, the receiver and the sender)")
    print(f"{'mode':>14} {'endpoints':>9} {'events':>7} {'deliveries/s':>13} {'unique ids':>10} {'p50 ms':>8} "
          f"{'p90 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(f"{r['mode']:>14} {r['endpoints']:>9} {r['events']:>7} {r['per_s']:>13.0f} {r['unique']:>10} "
              f"{r['p50']:>8.0f} {r['p90']:>8.0f} {r['p99']:>8.0f}")
        assert r["unique"] == r["events"] * r["endpoints"], "every delivery arrives (once per webhook-id)"
    print("\nCPU µs per delivery (machine: every process, the sender, NATS and PostgreSQL included)")
    names = ["ingest", "router", "delivery", "analytics", "auth", "ai", "nats", "postgres", "receiver", "sender",
             "machine"]
    print(f"{'mode':>14} {'endpoints':>9} " + " ".join(f"{n:>9}" for n in names))
    for r in results:
        print(f"{r['mode']:>14} {r['endpoints']:>9} " + " ".join(f"{r['cpu_us'][n]:>9.0f}" for n in names))
    print("\nPostgreSQL's CPU µs per delivery, by the service whose sessions used it")
    services = ["ingest", "router", "delivery", "analytics", "auth", "ai"]
    print(f"{'mode':>14} {'endpoints':>9} " + " ".join(f"{n:>9}" for n in services))
    for r in results:
        print(f"{r['mode']:>14} {r['endpoints']:>9} "
              + " ".join(f"{r['postgres_us'].get(n, 0.0):>9.0f}" for n in services))


if __name__ == "__main__":
    main()
