"""`switchboard up --cluster 3` on a fresh state folder: three embedded nats-server nodes forming one
JetStream cluster, every stream and KV bucket on all three, 2 processes of every service, and a webhook
through it delivered; a node killed is restarted by the supervisor on its ports and rejoins."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import nats
import pytest
from nats.js.errors import KeyDeletedError, KeyNotFoundError

import httpx

from tests.e2e.slice import create_slice, signed, wait_for
from tests.platform_runner import Platform, base_env
from tests.receivers import Receiver

pytestmark = pytest.mark.cluster

SERVICES = ("auth", "ingest", "router", "ai", "delivery", "analytics")


def monitor_port(node_dir: Path) -> int:
    for line in (node_dir / "nats-server.conf").read_text().splitlines():
        if line.startswith("http:"):
            return int(json.loads(line.split(":", 1)[1].strip()).rsplit(":", 1)[1])
    raise AssertionError(f"no monitoring port in {node_dir}")


def client_port(node_dir: Path) -> int:
    args = Path(f"/proc/{int((node_dir / 'nats-server.pid').read_text())}/cmdline").read_bytes().split(b"\0")
    return int(args[args.index(b"--port") + 1])


async def lease_holder(url: str, name: str) -> str | None:
    """Who holds the lease ``name`` (``host:pid``), from the KV bucket LEASES."""
    nc = await nats.connect(url)
    try:
        entry = await (await nc.jetstream().key_value("LEASES")).get(name)
        return entry.value.decode() if entry.value else None
    except (KeyNotFoundError, KeyDeletedError, nats.errors.TimeoutError):  # none yet, or a busy moment: ask again
        return None
    finally:
        await nc.close()


def streams(node_dir: Path) -> dict[str, tuple[int, list[str]]]:
    """Each stream's replicas and the nodes holding it, as a node's /jsz tells (the node itself, which
    holds every stream here, and the others it names: the leader and the other replicas)."""
    url = f"http://127.0.0.1:{monitor_port(node_dir)}/jsz?streams=true&config=true"
    with urllib.request.urlopen(url, timeout=2) as reply:
        details = json.load(reply)["account_details"]
    itself = f"n{node_dir.name.rsplit('-', 1)[1]}"
    found = {}
    for stream in details[0]["stream_detail"]:
        cluster = stream["cluster"]
        nodes = {itself, cluster.get("leader")} | {r["name"] for r in cluster.get("replicas") or []}
        found[stream["name"]] = (stream["config"]["num_replicas"], sorted(n for n in nodes if n))
    return found



def send_as_a_sender_does(platform: Platform, source_id: str, secret: str, payload: dict, timeout: float = 20) -> None:
    """POST a signed webhook until it is accepted, as senders do: a cluster electing a stream leader (just
    started, or a node just back) answers 503 with Retry-After for a moment, which accepted nothing."""
    body, headers = signed(secret, payload)
    deadline = time.monotonic() + timeout
    while True:
        reply = httpx.post(f"{platform.edge_url}/in/{source_id}", content=body, headers=headers)
        if reply.status_code == 202:
            return
        assert reply.status_code == 503 and reply.headers.get("retry-after"), reply.text
        assert time.monotonic() < deadline, f"still 503 after {timeout} s: {reply.text}"
        time.sleep(0.5)

def test_up_cluster_runs_three_nodes_replicated_streams_and_two_of_every_service(tmp_path: Path) -> None:
    env = base_env(tmp_path / "state")
    for service in SERVICES:
        del env[f"SWITCHBOARD_{service.upper()}_PROCESSES"]  # left to --cluster: 2 of each
    platform = Platform(env, args=("--cluster", "3"))
    try:
        platform.start(timeout=180)
        state = platform.state_dir
        assert set(platform.pids()) >= {f"{s}{suffix}" for s in SERVICES for suffix in ("", "-2")}
        nodes = sorted(state.glob("nats-*"))
        assert [n.name for n in nodes] == ["nats-1", "nats-2", "nats-3"]
        held = streams(nodes[0])
        assert {"EVENTS", "DELIVERIES", "KV_LEASES", "KV_RATE_LIMITS"} <= set(held)
        assert all(replicas == 3 and members == ["n1", "n2", "n3"] for replicas, members in held.values()), held
        with Receiver() as receiver, platform.client() as api:
            s = create_slice(api, receiver.url)
            send_as_a_sender_does(platform, s.source_id, s.source_secret, {"type": "order.created", "id": "c-1"})
            receiver.wait_for(lambda got: len(got) == 1, timeout=30)
            # A node killed: the supervisor starts it again on its ports, and the cluster has it back.
            pid = int((nodes[1] / "nats-server.pid").read_text())
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_for(lambda: (nodes[1] / "nats-server.pid").exists()
                     and int((nodes[1] / "nats-server.pid").read_text()) != pid, timeout=30)
            wait_for(lambda: all(m == ["n1", "n2", "n3"] for _, m in streams(nodes[1]).values()),
                     timeout=30)
            print(f"\nnode n2 killed: back in the cluster {time.monotonic() - killed_at:.1f} s later", flush=True)
            send_as_a_sender_does(platform, s.source_id, s.source_secret, {"type": "order.created", "id": "c-2"})
            receiver.wait_for(lambda got: len(got) == 2, timeout=30)
        # The alert rounds run in one analytics process, under its lease; killed, the other takes them over.
        url = f"nats://127.0.0.1:{client_port(nodes[0])}"
        holder = wait_for(lambda: asyncio.run(lease_holder(url, "analytics.alerts")), timeout=30)
        pids = platform.pids()
        assert int(holder.rsplit(":", 1)[1]) in (pids["analytics"], pids["analytics-2"]), (holder, pids)
        os.kill(int(holder.rsplit(":", 1)[1]), signal.SIGKILL)
        killed_at = time.monotonic()
        successor = wait_for(lambda: (h := asyncio.run(lease_holder(url, "analytics.alerts"))) not in (None, holder)
                             and h, timeout=30)
        print(f"alert rounds moved from {holder} to {successor} {time.monotonic() - killed_at:.1f} s after "
              "their holder was killed", flush=True)
    finally:
        assert platform.stop(timeout=60) == 0, platform.log_tail()
