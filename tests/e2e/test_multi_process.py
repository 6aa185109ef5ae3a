"""Several processes per service (SWITCHBOARD_<SERVICE>_PROCESSES) under `switchboard up`.

Two edge processes share the HTTP port (the kernel spreads connections), two
routers and two delivery processes share their durable consumers: every
accepted webhook is delivered once, each process does part of the work, and a
delivery process killed under load costs nothing (its in-flight messages go to
the other, or to its replacement).
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from collections.abc import Iterator

import httpx
from prometheus_client.parser import text_string_to_metric_families
import pytest

from tests.e2e.slice import create_slice, signed, wait_for
from tests.platform_runner import Platform, base_env
from tests.receivers import Receiver
from switchboard.cli.supervisor import listening_ports

pytestmark = pytest.mark.e2e

SCALED = ("ingest", "router", "delivery")


@pytest.fixture
def two_of_each(tmp_path: Path, nats_server, database_url: str) -> Iterator[Platform]:
    env = base_env(tmp_path / "state", SWITCHBOARD_NATS_URL=nats_server.url, SWITCHBOARD_DATABASE_URL=database_url,
                   **{f"SWITCHBOARD_{name.upper()}_PROCESSES": "2" for name in SCALED})
    platform = Platform(env).start()
    try:
        yield platform
    finally:
        assert platform.stop() == 0, platform.log_tail()


def counter_total(port: int, name: str) -> float:
    """The sum of a counter's series on one process's /metrics."""
    # Parsed, not matched: label values hold braces (the route template "/in/{source_id}").
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == f"{name}_total")


def test_two_processes_of_each_scalable_service_share_the_work(two_of_each: Platform) -> None:
    platform = two_of_each
    pids = platform.pids()
    assert {"ingest", "ingest-2", "router", "router-2", "delivery", "delivery-2"} <= set(pids), pids
    assert "auth-2" not in pids and len(set(pids.values())) == len(pids)
    ports = listening_ports(platform.state_dir)
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)

        def post(n: int) -> int:
            body, headers = signed(s.source_secret, {"type": "spread", "n": n})
            # A new connection each time: the kernel picks an edge process per connection.
            return httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=body, headers=headers,
                              timeout=15).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(post, range(300)))
        assert statuses == [202] * 300
        got = receiver.wait_for(lambda got: len({r.headers["webhook-id"] for r in got}) >= 300, timeout=60)
        assert len({r.headers["webhook-id"] for r in got}) == 300

    answered = {name: counter_total(ports[f"{name}_metrics"], "switchboard_http_requests") for name in
                ("ingest", "ingest-2")}
    attempts = {name: counter_total(ports[f"{name}_metrics"], "switchboard_delivery_attempts") for name in
                ("delivery", "delivery-2")}
    routed = {name: counter_total(ports[f"{name}_metrics"], "switchboard_messages_handled") for name in
              ("router", "router-2")}
    # Each process took part (not an even split: connections and pulls go where they go).
    for share in (answered, attempts, routed):
        assert all(v > 0 for v in share.values()), share
    assert sum(answered.values()) >= 300, answered  # every webhook counted (and the API calls)
    assert sum(attempts.values()) == 300, attempts


def test_a_killed_delivery_process_loses_nothing_while_its_twin_carries_on(two_of_each: Platform) -> None:
    platform = two_of_each
    with Receiver(delay_s=0.05) as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        for n in range(200):
            body, headers = signed(s.source_secret, {"type": "kill", "n": n})
            assert httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=body, headers=headers,
                              timeout=15).status_code == 202
        receiver.wait_for(lambda got: len(got) >= 20, timeout=30)
        victim = platform.pids()["delivery-2"]
        os.kill(victim, signal.SIGKILL)
        got = receiver.wait_for(lambda got: len({r.headers["webhook-id"] for r in got}) >= 200, timeout=90)
        assert len({r.headers["webhook-id"] for r in got}) == 200
        # The supervisor replaced it.
        wait_for(lambda: platform.pids().get("delivery-2") not in (None, victim), timeout=30)
