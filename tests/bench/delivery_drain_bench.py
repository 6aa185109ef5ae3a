"""The delivery service alone: how fast it empties a full DELIVERIES queue.

One `python -m services.delivery` process (SSRF guard on, loopback allowed)
on embedded NATS and PostgreSQL, N endpoints on one fast loopback receiver
(tests/bench/fast_receiver.py). The queue is filled while the process is
paused (SIGSTOP), then it is resumed and timed until the receiver has every
delivery. Besides deliveries/s it prints the delivery process's CPU time per
delivery, which is what the machine's other load disturbs least.

    .venv/bin/python -m tests.bench.delivery_drain_bench
    BENCH_PROFILE=1 ...   # also a py-spy profile of the drain (needs py-spy)
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

from services.delivery.endpoint_store import EndpointStore
from switchboard.database import open_pool
from switchboard.cli.embedded import free_port
from switchboard.events import DeliveryMessage, delivery_subject
from switchboard.messaging import encode
from switchboard.signatures import generate_webhook_secret
from tests.bench.common import bench_env, command_cpu_seconds, cpu_seconds, infrastructure, spawn, stop, wait_http
from tests.sealing import BOX

DELIVERIES = int(os.environ.get("BENCH_DELIVERIES", "20000"))
FAN_OUTS = tuple(int(n) for n in os.environ.get("BENCH_ENDPOINTS", "1,10,100").split(","))
TENANT = "t_bench"


async def create_endpoints(database_url: str, receiver: str, count: int, run: int) -> list[str]:
    pool = await open_pool(database_url, max_size=2)
    try:
        store = EndpointStore(pool, box=BOX)
        return [(await store.create(TENANT, f"{receiver}/hook?r={run}&e={n}", "", "webhook",
                                             generate_webhook_secret())).id for n in range(count)]
    finally:
        await pool.close()


async def fill(nats_url: str, endpoints: list[str], total: int, run: int) -> None:
    nc = await nats.connect(nats_url.split(","))
    js = nc.jetstream()
    try:
        for n in range(total):
            endpoint = endpoints[n % len(endpoints)]
            message = DeliveryMessage(
                event_id=f"evt_r{run}_{n // len(endpoints)}", tenant_id=TENANT, endpoint_id=endpoint,
                route_id="rt_bench", event_type="order.created", source_id="src_bench", received_at=time.time(),
                payload={"type": "order.created", "n": n, "order": {"id": n, "total": 1999, "items": ["a", "b"]}},
            )
            await js.publish_async(delivery_subject(TENANT, endpoint), encode(message.to_message()),
                                   headers={"Nats-Msg-Id": message.delivery_id})
        await js.publish_async_completed()
        while (await js.stream_info("DELIVERIES")).state.messages < total:
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


async def consumer_ready(nats_url: str, timeout_s: float = 120.0) -> None:
    """Wait until the delivery process has declared its consumer (it is then up)."""
    nc = await nats.connect(nats_url.split(","))
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                await nc.jetstream().consumer_info("DELIVERIES", "delivery")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


def drain(env: dict[str, str], receiver: str, nats_url: str, database_url: str, endpoints: int, run: int,
          delivery: subprocess.Popen) -> dict:
    ids = asyncio.run(create_endpoints(database_url, receiver, endpoints, run))
    httpx.post(f"{receiver}/reset").raise_for_status()
    os.kill(delivery.pid, signal.SIGSTOP)
    asyncio.run(fill(nats_url, ids, DELIVERIES, run))
    cpu_before, start = cpu_seconds(delivery.pid), time.time()
    postgres_before = command_cpu_seconds("postgres")
    os.kill(delivery.pid, signal.SIGCONT)
    profiler = None
    py_spy = shutil.which("py-spy", path=f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}")
    if os.environ.get("BENCH_PROFILE") and py_spy:
        profiler = subprocess.Popen([py_spy, "record", "-p", str(delivery.pid), "-o",
                                     f"/tmp/delivery-drain-{endpoints}.txt", "-f", "raw", "-r", "100", "--gil"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        stats = httpx.get(f"{receiver}/stats", timeout=30).json()
        if stats["deliveries"] >= DELIVERIES:
            break
        time.sleep(0.1)
    cpu = cpu_seconds(delivery.pid) - cpu_before
    postgres = command_cpu_seconds("postgres") - postgres_before
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)
    elapsed = stats["last"] - start
    return {"endpoints": endpoints, "deliveries": stats["deliveries"], "unique": stats["unique"],
            "per_s": stats["deliveries"] / elapsed, "cpu_us": cpu / stats["deliveries"] * 1e6,
            "postgres_us": postgres / stats["deliveries"] * 1e6}


def main() -> None:
    with infrastructure() as (nats_url, database_url, scratch):
        port = free_port()
        env = bench_env(nats_url, database_url, scratch / "state", SWITCHBOARD_LOG_FORMAT="text",
                        # A run may send everything to one endpoint: not held to the per-endpoint default (16).
                        SWITCHBOARD_ENDPOINT_MAX_IN_FLIGHT="64")
        receiver_process = spawn(["-m", "tests.bench.fast_receiver", str(port)], env)
        delivery = spawn(["-m", "services.delivery"], env)
        receiver = f"http://127.0.0.1:{port}"
        results = []
        try:
            wait_http(f"{receiver}/stats")
            asyncio.run(consumer_ready(nats_url))
            for run, endpoints in enumerate(FAN_OUTS):
                results.append(drain(env, receiver, nats_url, database_url, endpoints, run, delivery))
        finally:
            stop(delivery)
            stop(receiver_process)
    print(f"\ndelivery drain: {DELIVERIES} queued deliveries per run, one delivery process, one fast loopback "
          "receiver (2 cores shared with NATS, PostgreSQL and the receiver)")
    print(f"{'endpoints':>9} {'deliveries/s':>13} {'CPU µs/delivery':>16} {'PostgreSQL µs':>14} {'unique ids':>11}")
    for r in results:
        print(f"{r['endpoints']:>9} {r['per_s']:>13.0f} {r['cpu_us']:>16.0f} {r['postgres_us']:>14.0f} "
              f"{r['unique']:>11}")
        assert r["unique"] == r["deliveries"] == DELIVERIES, "every delivery arrives once per webhook-id"


if __name__ == "__main__":
    main()
