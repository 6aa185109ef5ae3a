"""Limits that hold across replicas, on the clustered platform with 2 processes of every service:
an endpoint's rate limit measured at its receiver with 2 delivery processes sending, and a source's
rate limit at 2 edge processes sharing the port."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from switchboard.cli.supervisor import listening_ports
from tests.chaos.harness import ChaosReceiver, Receipt
from tests.e2e.slice import signed
from tests.e2e.test_multi_process import counter_total
from tests.platform_runner import Platform

pytestmark = pytest.mark.cluster

ENDPOINT_RATE = 20.0
# `make cluster` also asserts the rate reaches the limit (within 10%): a throughput figure, which a slow or loaded
# machine misses (8/s was measured on one); `make test` asserts what the limit promises, that it is not exceeded.
FULL = os.environ.get("SWITCHBOARD_CLUSTER") == "full"


def post_all(url: str, secret: str, bodies: list[dict], connections: int = 16) -> list[int]:
    """Each body signed and posted, over ``connections`` connections at once (spread over the edge's
    processes by the kernel); the statuses."""
    def post(payload: dict) -> int:
        body, headers = signed(secret, payload)
        with httpx.Client(timeout=30) as client:  # a connection each: the kernel picks a process for each
            return client.post(url, content=body, headers=headers).status_code

    with ThreadPoolExecutor(connections) as pool:
        return list(pool.map(post, bodies))


def delivered_while_arriving(receiver: ChaosReceiver, count: int, holds: Callable[[], dict[str, float]],
                             within_s: float, stalled_s: float = 30.0) -> list[Receipt]:
    """The receiver's successful receipts once ``count`` have come: waited for as long as deliveries keep
    arriving, up to ``within_s`` (a loaded machine sends slower, which is not what `make test` checks
    here). AssertionError, saying how the deliveries went, once none has come for ``stalled_s``."""
    progress: list[str] = []
    arrived, started = 0, time.monotonic()
    last_arrival = started
    while True:
        delivered = [r for r in receiver.snapshot() if r.ok]
        now = time.monotonic()
        if len(delivered) >= count:
            return delivered
        if len(delivered) > arrived:
            arrived, last_arrival = len(delivered), now
            progress = [*progress[-20:], f"{arrived} delivered, holds per process {holds()}"]
        assert now - last_arrival < stalled_s and now - started < within_s, (
            f"{arrived} of {count} delivered in {now - started:.0f} s, the last {now - last_arrival:.0f} s ago; "
            f"receipts failed {sum(not r.ok for r in receiver.snapshot())}, holds per process {holds()}; "
            f"before: {progress}")
        time.sleep(0.5)


def test_an_endpoint_limit_holds_at_its_receiver_with_two_delivery_processes(cluster_platform: Platform) -> None:
    ports = listening_ports(cluster_platform.state_dir)
    attempts_before = {name: counter_total(ports[f"{name}_metrics"], "switchboard_delivery_attempts")
                       for name in ("delivery", "delivery-2")}

    def holds_per_process() -> dict[str, float]:
        return {name: counter_total(ports[f"{name}_metrics"], "switchboard_delivery_holds") for name in attempts_before}

    with ChaosReceiver() as receiver, cluster_platform.client() as api:
        source = api.post("/v1/sources", json={"name": "limited", "config": {"event_type_field": "type"}}).json()
        # The burst left to its default: a second's worth.
        endpoint = api.post("/v1/endpoints", json={
            "url": receiver.url, "options": {"rate_limit": {"per_second": ENDPOINT_RATE}}}).json()
        assert api.post("/v1/routes", json={"name": "all", "endpoint_ids": [endpoint["id"]]}).status_code == 201
        count = 300
        statuses = post_all(f"{cluster_platform.edge_url}/in/{source['id']}", source["secret"],
                            [{"type": "limited.event", "id": f"l-{n}"} for n in range(count)])
        assert statuses.count(202) == count, statuses
        receipts = delivered_while_arriving(receiver, count, holds_per_process,
                                            within_s=count / ENDPOINT_RATE * 10 + 60)
    times = sorted(r.at for r in receipts)
    # The steady rate, past the first two seconds (the burst, and the queue filling up).
    steady = [t for t in times if t >= times[0] + 2.0]
    measured = (len(steady) - 1) / (steady[-1] - steady[0])
    attempts = {name: counter_total(ports[f"{name}_metrics"], "switchboard_delivery_attempts") - before
                for name, before in attempts_before.items()}
    holds = holds_per_process()
    print(f"\nendpoint limit {ENDPOINT_RATE:.0f}/s, 2 delivery processes: measured {measured:.2f}/s at the "
          f"receiver over {steady[-1] - steady[0]:.1f} s; attempts per process {attempts}; holds per process "
          f"{holds}", flush=True)
    # Not above the limit, give or take the measurement's edges (22.1/s was seen for 20/s).
    assert measured <= 1.2 * ENDPOINT_RATE, measured
    if FULL:
        assert abs(measured - ENDPOINT_RATE) <= 0.1 * ENDPOINT_RATE, measured
    assert min(attempts.values()) > 0.2 * count, attempts  # both processes sent: the limit was shared


def test_a_source_limit_holds_across_two_edge_processes(cluster_platform: Platform) -> None:
    with cluster_platform.client() as api:
        source = api.post("/v1/sources", json={"name": "flooded", "config": {"event_type_field": "type"},
                                               "rate_limit": {"per_second": 10, "burst": 10}}).json()
    started = time.monotonic()
    statuses = post_all(f"{cluster_platform.edge_url}/in/{source['id']}", source["secret"],
                        [{"type": "flood", "id": f"f-{n}"} for n in range(400)], connections=24)
    seconds = time.monotonic() - started
    accepted = statuses.count(202)
    allowed = 10 * seconds + 10
    print(f"\nsource limit 10/s burst 10, 2 edge processes: {accepted} of {len(statuses)} accepted in "
          f"{seconds:.1f} s (the limit allows {allowed:.0f}); the rest {set(statuses) - {202}}", flush=True)
    assert set(statuses) <= {202, 429}
    assert accepted >= allowed * 0.5
    # A lease NATS does not answer within ASK_TIMEOUT_S (a loaded machine, a leader being elected) gives way to
    # the process's own bucket for a second, as documented: then the limit holds per process, which is what
    # it promises whatever the load (112 of an allowed 99 were seen on a loaded CI machine). The shared
    # precision, one lease per process over the limit, is `make cluster`'s check.
    assert accepted <= 2 * allowed, (accepted, allowed)
    if FULL:
        assert accepted <= allowed + 2, (accepted, allowed)
