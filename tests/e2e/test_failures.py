"""The foundation's failure cases, each against real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from switchboard.cli.embedded import EmbeddedNats
from tests.e2e.slice import create_slice, signed
from tests.e2e.test_slice import wait_for_delivery
from tests.platform_runner import Platform, base_env
from tests.sealing import MASTER_KEY
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e


def test_nats_unreachable_when_a_webhook_arrives_gives_503_and_publishes_nothing(
    platform: Platform, nats_server: EmbeddedNats
) -> None:
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        body, headers = signed(s.source_secret, {"type": "while.down"})
        nats_server.stop()
        # Until the edge notices the lost connection a publish times out: also 503.
        for _ in range(3):
            reply = httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=body, headers=headers, timeout=30)
            assert reply.status_code == 503, reply.text
            assert reply.json()["error"]["code"] == "unavailable"
            assert reply.headers["retry-after"]
        ready = httpx.get(f"{platform.edge_url}/readyz")
        assert ready.status_code == 503
        # Nothing half-written: the same store comes back with no event in it.
        nats_server.start()
        time.sleep(3)
        assert receiver.requests == []


def test_a_killed_service_is_restarted_and_accepted_events_are_still_delivered(platform: Platform) -> None:
    with Receiver(status=500) as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        body, headers = signed(s.source_secret, {"type": "survives.kill"})
        first = httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=body, headers=headers)
        assert first.status_code == 202
        # The event is accepted and its first attempt failed: kill the delivery service mid-retry.
        receiver.wait_for(lambda r: len(r) >= 1)
        delivery_pid = platform.pids()["delivery"]
        os.kill(delivery_pid, signal.SIGKILL)
        # And the router, so the next event is accepted while no router runs.
        router_pid = platform.pids()["router"]
        os.kill(router_pid, signal.SIGKILL)
        body2, headers2 = signed(s.source_secret, {"type": "accepted.without.router"})
        second = httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=body2, headers=headers2)
        assert second.status_code == 202
        receiver.status = 200

        platform.wait_for_log(r"service died; restarting")
        wait_for_delivery(api, first.json()["event_id"], timeout=60)
        wait_for_delivery(api, second.json()["event_id"], timeout=60)
        new_pids = platform.pids()
        assert new_pids["delivery"] != delivery_pid and new_pids["router"] != router_pid
        assert "killed by SIGKILL" in "\n".join(platform.output)


def test_postgres_unreachable_at_start_names_the_host_not_the_password(
        tmp_path: Path, nats_server: EmbeddedNats) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]  # bound, never listening: connection refused
        url = f"postgresql://switchboard:hunter2secret@127.0.0.1:{dead_port}/switchboard"
        env = base_env(tmp_path / "state", SWITCHBOARD_NATS_URL=nats_server.url, SWITCHBOARD_DATABASE_URL=url)

        one = subprocess.run([sys.executable, "-m", "services.router"], env=env, capture_output=True, text=True,
                             timeout=60)
        whole = Platform(env)
        with pytest.raises(AssertionError, match="exited 1"):
            whole.start(timeout=60)

    assert one.returncode != 0
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{dead_port}/switchboard" in one.stderr
    combined = one.stdout + one.stderr + "\n".join(whole.output)
    assert "hunter2secret" not in combined
    assert f"127.0.0.1:{dead_port}" in "\n".join(whole.output)


def test_a_port_in_use_is_a_clear_error_and_a_non_zero_exit(
    tmp_path: Path, nats_server: EmbeddedNats, database_url: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = base_env(tmp_path / "state", SWITCHBOARD_NATS_URL=nats_server.url,
                       SWITCHBOARD_DATABASE_URL=database_url, SWITCHBOARD_HTTP_PORT=str(port))
        up = subprocess.run([sys.executable, "-m", "switchboard.cli", "up"], env=env, capture_output=True,
                            text=True, timeout=60)
        assert up.returncode == 1
        assert f"port {port} on 127.0.0.1 (HTTP edge) is already in use" in up.stderr

        # One service alone, without the master key its service token is derived from: a clear 78.
        env = base_env(tmp_path / "alone", SWITCHBOARD_NATS_URL=nats_server.url,
                       SWITCHBOARD_DATABASE_URL=database_url, SWITCHBOARD_AI_GRPC_PORT=str(port))
        alone = subprocess.run([sys.executable, "-m", "services.ai"], env=env, capture_output=True, text=True,
                               timeout=60)
        assert alone.returncode == 78
        assert "SWITCHBOARD_MASTER_KEY must be set" in alone.stderr
        # With it, its gRPC port taken.
        alone = subprocess.run([sys.executable, "-m", "services.ai"], env={**env, "SWITCHBOARD_MASTER_KEY": MASTER_KEY},
                               capture_output=True, text=True, timeout=60)
        assert alone.returncode == 78
        assert f"cannot listen on 127.0.0.1:{port} for gRPC" in alone.stderr


def test_delivery_killed_mid_flight_loses_nothing_and_each_webhook_id_is_delivered(platform: Platform) -> None:
    with Receiver(delay_s=0.2) as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        events = []
        for n in range(60):
            body, headers = signed(s.source_secret, {"type": "burst", "n": n})
            reply = httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=body, headers=headers)
            assert reply.status_code == 202
            events.append(reply.json()["event_id"])
        receiver.wait_for(lambda r: len(r) >= 10)
        os.kill(platform.pids()["delivery"], signal.SIGKILL)  # with up to 16 sends in flight
        platform.wait_for_log(r"service died; restarting")
        for event_id in events:
            wait_for_delivery(api, event_id, timeout=90)
        ids = [r.headers["webhook-id"] for r in receiver.requests]
        # Every accepted event reached the receiver; one that de-duplicates by
        # webhook-id handles each exactly once. Only sends cut off by the kill
        # may arrive twice (at most the endpoint's in-flight cap).
        assert set(ids) == {f"{event_id}:{s.endpoint_id}" for event_id in events}
        assert len(ids) - len(set(ids)) <= 16
        assert all(len(api.get(f"/v1/events/{e}").json()["deliveries"]) == 1 for e in events)
