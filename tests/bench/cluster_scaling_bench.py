"""Delivery on a 3-node JetStream cluster: 1 and 2 delivery processes, and streams of 3 replicas
against one server with 1.

Each configuration runs `python -m services.delivery` processes (SWITCHBOARD_DELIVERY_PROCESSES, as
`switchboard up` runs them, sharing one durable consumer) on embedded PostgreSQL and either a 3-node
cluster on loopback (streams of 3 replicas) or one nats-server (1 replica), delivering to 10 endpoints
on one fast loopback receiver (tests/bench/fast_receiver.py). Two measurements each:

- **steady**: deliveries published at each of BENCH_RATES a second for BENCH_SECONDS, as users run a platform;
  the delivery processes' CPU per delivery (summed over the processes), and NATS's (every node's);
- **drain**: BENCH_DELIVERIES queued while the processes are paused, then timed until delivered: the
  most the configuration delivers a second.

On 2 cores a second delivery process cannot deliver much more (the machine is the bound, shared with
three nats-servers, PostgreSQL and the receiver). What predicts scaling on more cores is the CPU per
delivery: a process's cost per delivery falls as its own rate grows (its group commits, pulls and event
loop turns are shared by more deliveries), so it is compared at the same rate per process (2 processes
at 1,500/s against 1 at 750/s) as well as at the same total rate.

    .venv/bin/python -m tests.bench.cluster_scaling_bench
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import nats

from switchboard.cli.embedded import EmbeddedNats, EmbeddedNatsCluster, EmbeddedPostgres, free_port
from switchboard.events import DeliveryMessage, delivery_subject
from switchboard.messaging import connect_nats, encode, ensure_streams
from switchboard.settings import Settings
from tests.bench.common import bench_env, command_cpu_seconds, cpu_seconds, spawn, stop, wait_http
from tests.bench.delivery_drain_bench import TENANT, consumer_ready, create_endpoints, fill

# Steady rates: one a single process carries with room to spare, and 750 and 1500 a second: 2 processes at
# 1,500 each see the 750 one process sees at 750 (replicas added as the load grows).
RATES = tuple(float(r) for r in os.environ.get("BENCH_RATES", "300,750,1500").split(","))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
DELIVERIES = int(os.environ.get("BENCH_DELIVERIES", "10000"))
ENDPOINTS = 10
CONFIGS = (("3 nodes, R3", 3, 1), ("3 nodes, R3", 3, 2), ("1 node, R1", 1, 1), ("1 node, R1", 1, 2))


@contextmanager
def nats_servers(scratch: Path, nodes: int) -> Iterator[tuple[str, list[EmbeddedNats]]]:
    """(url, servers): a cluster of ``nodes`` on loopback, or one server."""
    if nodes == 1:
        server = EmbeddedNats(scratch / "nats")
        try:
            yield server.start(), [server]
        finally:
            server.stop()
        return
    cluster = EmbeddedNatsCluster(scratch, nodes, [(free_port(), free_port(), free_port()) for _ in range(nodes)])
    try:
        yield cluster.start(), cluster.nodes
    finally:
        cluster.stop()


async def declare(nats_url: str, settings: Settings) -> None:
    nc = await connect_nats(nats_url, "bench")
    try:
        await ensure_streams(nc.jetstream(timeout=30), settings)
    finally:
        await nc.close()


async def publish_steady(nats_url: str, endpoints: list[str], rate: float, seconds: float, run: int) -> int:
    """Deliveries published at ``rate`` a second for ``seconds``, each awaited as the router does."""
    nc = await nats.connect(nats_url.split(","))
    js = nc.jetstream()
    sent = 0
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) + 1
            batch = []
            while sent < due:
                endpoint = endpoints[sent % len(endpoints)]
                message = DeliveryMessage(
                    event_id=f"evt_s{run}_{sent // len(endpoints)}", tenant_id=TENANT, endpoint_id=endpoint,
                    route_id="rt_bench", event_type="order.created", source_id="src_bench",
                    received_at=time.time(), payload={"type": "order.created", "n": sent, "sent_at": time.time()})
                batch.append(js.publish(delivery_subject(TENANT, endpoint), encode(message.to_message()),
                                        headers={"Nats-Msg-Id": message.delivery_id}))
                sent += 1
            await asyncio.gather(*batch)
            await asyncio.sleep(0.01)
    finally:
        await nc.close()
    return sent


def wait_count(receiver: str, count: int, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = httpx.get(f"{receiver}/stats", timeout=30).json()
        if stats["deliveries"] >= count:
            return stats
        time.sleep(0.1)
    raise SystemExit(f"only {stats['deliveries']} of {count} delivered in {timeout_s:.0f} s")


def run(label: str, nodes: int, processes: int) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="sb-cluster-bench-"))
    postgres = EmbeddedPostgres(scratch / "pg")
    try:
        database_url = postgres.start()
        with nats_servers(scratch, nodes) as (nats_url, servers):
            env = bench_env(nats_url, database_url, scratch / "state", SWITCHBOARD_LOG_FORMAT="text",
                            SWITCHBOARD_STREAM_REPLICAS=str(min(3, nodes)),
                            SWITCHBOARD_DELIVERY_PROCESSES=str(processes),
                            SWITCHBOARD_ENDPOINT_MAX_IN_FLIGHT="64")
            asyncio.run(declare(nats_url, Settings.from_env(env)))
            port = free_port()
            receiver_process = spawn(["-m", "tests.bench.fast_receiver", str(port)], env)
            receiver = f"http://127.0.0.1:{port}"
            # Each process its own metrics port; the gRPC port they share (SO_REUSEPORT), as under `switchboard up`.
            deliveries = [spawn(["-m", "services.delivery"], {**env, "SWITCHBOARD_PROCESS_INDEX": str(i),
                                                              "SWITCHBOARD_DELIVERY_METRICS_PORT": str(free_port())})
                          for i in range(processes)]
            try:
                wait_http(f"{receiver}/stats")
                asyncio.run(consumer_ready(nats_url))
                time.sleep(2.0)  # every process pulling
                dead = [p.args for p in deliveries if p.poll() is not None]
                if dead:
                    raise SystemExit(f"a delivery process exited at start: {dead}")
                return {"label": label, "processes": processes,
                        "steady": [steady(receiver, nats_url, database_url, deliveries, servers, rate, run)
                                   for run, rate in enumerate(RATES)],
                        **drained(receiver, nats_url, database_url, deliveries)}
            finally:
                for process in deliveries:
                    stop(process)
                stop(receiver_process)
    finally:
        postgres.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def steady(receiver: str, nats_url: str, database_url: str, deliveries: list[subprocess.Popen],
           servers: list[EmbeddedNats], rate: float, run: int) -> dict:
    ids = asyncio.run(create_endpoints(database_url, receiver, ENDPOINTS, 10 + run))
    httpx.post(f"{receiver}/reset").raise_for_status()
    pids = [p.pid for p in deliveries]
    nats_pids = [s.process.pid for s in servers if s.process is not None]
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    nats_before = sum(cpu_seconds(pid) for pid in nats_pids)
    postgres_before = command_cpu_seconds("postgres")
    sent = asyncio.run(publish_steady(nats_url, ids, rate, SECONDS, run))
    stats = wait_count(receiver, sent)
    count = stats["deliveries"]
    return {"rate": rate, "steady_per_s": count / (stats["last"] - stats["first"]),
            "cpu_us": (sum(cpu_seconds(pid) for pid in pids) - cpu_before) / count * 1e6,
            "nats_us": (sum(cpu_seconds(pid) for pid in nats_pids) - nats_before) / count * 1e6,
            "postgres_us": (command_cpu_seconds("postgres") - postgres_before) / count * 1e6,
            "steady_unique": stats["unique"] == count}


def drained(receiver: str, nats_url: str, database_url: str, deliveries: list[subprocess.Popen]) -> dict:
    ids = asyncio.run(create_endpoints(database_url, receiver, ENDPOINTS, 1))
    httpx.post(f"{receiver}/reset").raise_for_status()
    for process in deliveries:
        os.kill(process.pid, signal.SIGSTOP)
    asyncio.run(fill(nats_url, ids, DELIVERIES, 1))
    cpu_before = sum(cpu_seconds(p.pid) for p in deliveries)
    start = time.time()
    for process in deliveries:
        os.kill(process.pid, signal.SIGCONT)
    stats = wait_count(receiver, DELIVERIES)
    count = stats["deliveries"]
    return {"drain_per_s": count / (stats["last"] - start),
            "drain_cpu_us": (sum(cpu_seconds(p.pid) for p in deliveries) - cpu_before) / count * 1e6,
            "drain_unique": stats["unique"] == count}


def main() -> None:
    results = [run(label, nodes, processes) for label, nodes, processes in CONFIGS]
    print(f"\ndelivery on a JetStream cluster: steady rates {', '.join(f'{r:.0f}/s' for r in RATES)} for "
          f"{SECONDS:.0f} s each, then {DELIVERIES} queued deliveries drained; {ENDPOINTS} endpoints on one fast "
          "loopback receiver; 2 cores shared by everything; CPU per delivery summed over the delivery processes")
    print(f"{'NATS':<13} {'processes':>9} {'load':>12} {'delivered/s':>12} {'delivery CPU µs':>16} "
          f"{'NATS µs':>8} {'PG µs':>6}")
    for r in results:
        for s in r["steady"]:
            load = f"steady {s['rate']:.0f}/s"
            print(f"{r['label']:<13} {r['processes']:>9} {load:>12} "
                  f"{s['steady_per_s']:>12.0f} {s['cpu_us']:>16.0f} {s['nats_us']:>8.0f} {s['postgres_us']:>6.0f}")
            assert s["steady_unique"], "every delivery arrives once per webhook-id"
        print(f"{r['label']:<13} {r['processes']:>9} {'drain':>12} {r['drain_per_s']:>12.0f} "
              f"{r['drain_cpu_us']:>16.0f}")
        assert r["drain_unique"], "every delivery arrives once per webhook-id"
    one, two, r1 = results[0], results[1], results[2]
    steady_change = ", ".join(f"{b['cpu_us'] / a['cpu_us'] - 1:+.0%} at {a['rate']:.0f}/s"
                              for a, b in zip(one["steady"], two["steady"]))
    print(f"\n2 delivery processes against 1 on the cluster: drain {two['drain_per_s'] / one['drain_per_s']:.2f}x "
          f"with CPU per delivery {two['drain_cpu_us'] / one['drain_cpu_us'] - 1:+.0%}; steady CPU per delivery "
          f"at the same total rate {steady_change}")
    by_rate = {s["rate"]: s for s in one["steady"]}
    same_share = ", ".join(f"{s['cpu_us'] / by_rate[s['rate'] / 2]['cpu_us'] - 1:+.0%} at {s['rate'] / 2:.0f}/s each"
                           for s in two["steady"] if s["rate"] / 2 in by_rate)
    if same_share:
        print(f"2 processes against 1 at the same rate per process: CPU per delivery {same_share}")
    r3_nats, r1_nats = one["steady"][0]["nats_us"], r1["steady"][0]["nats_us"]
    print(f"R3 against R1 (1 process, steady {RATES[0]:.0f}/s): NATS CPU per delivery {r3_nats:.0f} against "
          f"{r1_nats:.0f} µs; drain {one['drain_per_s']:.0f} against {r1['drain_per_s']:.0f}/s")


if __name__ == "__main__":
    main()
