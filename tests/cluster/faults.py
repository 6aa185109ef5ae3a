"""Faults of a clustered platform, from outside: a NATS node killed and restarted, one replica of a
service killed, and a sequence of them in one scenario (tests/chaos/scenario.py runs it).

``KillNatsNode`` kills -9 the node that leads the EVENTS stream (where every accepted webhook is
stored), keeps it down, and is back when every stream and KV bucket has a leader among the others
and answers: the JetStream election, with no step taken by anyone. ``RestartNatsNode`` starts it
again on its ports and store; back when it is healthy (caught up with the meta leader).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass, field

from switchboard.cli.embedded import EmbeddedNats, EmbeddedNatsCluster
from tests.chaos.faults import Fault, FaultNotInEffect, FaultTiming, _wait_until

__all__ = ["KillNatsNode", "RestartNatsNode", "Steps", "stream_leaders"]


def stream_leaders(node: EmbeddedNats) -> dict[str, str | None]:
    """Each stream's (and KV bucket's) leader, as ``node``'s monitoring endpoint tells it."""
    url = f"http://{node.host}:{node.monitor_port}/jsz?streams=true"
    with urllib.request.urlopen(url, timeout=2) as reply:
        details = json.load(reply).get("account_details") or []
    return {stream["name"]: (stream.get("cluster") or {}).get("leader")
            for account in details for stream in account.get("stream_detail") or []}


class KillNatsNode:
    def __init__(self, cluster: EmbeddedNatsCluster, stream: str = "EVENTS", back_timeout_s: float = 30.0) -> None:
        self.cluster = cluster
        self.stream = stream
        self.back_timeout_s = back_timeout_s
        self.killed: EmbeddedNats | None = None
        self.label = f"kill -9 the NATS node leading {stream}"

    def _leaders_elsewhere(self) -> bool:
        assert self.killed is not None
        for node in self.cluster.nodes:
            if node is self.killed:
                continue
            try:
                leaders = stream_leaders(node)
            except OSError:
                continue
            return bool(leaders) and all(leader not in (None, self.killed.server_name) for leader in leaders.values())
        return False

    async def inject(self) -> FaultTiming:
        leader = stream_leaders(self.cluster.nodes[0]).get(self.stream)
        self.killed = next((node for node in self.cluster.nodes if node.server_name == leader), None)
        if self.killed is None or self.killed.process is None:
            raise FaultNotInEffect(f"no live node leads {self.stream} (leader: {leader})")
        pid = self.killed.process.pid
        self.killed.process.kill()
        start = time.monotonic()
        self.killed.process.wait()
        self.killed.process = None
        back = await _wait_until(self._leaders_elsewhere, self.back_timeout_s)
        return FaultTiming(start, start, back, f"{self.killed.server_name} (pid {pid}); every stream led elsewhere "
                           f"{'never' if back is None else f'{back - start:.1f} s'} after")


class RestartNatsNode:
    def __init__(self, killed: KillNatsNode, back_timeout_s: float = 30.0) -> None:
        self.killed = killed
        self.back_timeout_s = back_timeout_s
        self.label = "restart it"

    async def inject(self) -> FaultTiming:
        node = self.killed.killed
        if node is None:
            raise FaultNotInEffect("no node was killed")
        start = time.monotonic()
        node.start()
        back = await _wait_until(node.healthy, self.back_timeout_s)
        return FaultTiming(start, start, back, f"{node.server_name} healthy "
                           f"{'never' if back is None else f'{back - start:.1f} s'} after its start")


@dataclass
class Steps:
    """Faults one after another, ``pause_s`` apart: one fault to the scenario, each step's timing kept.

    The whole spans the first step's start to the last one's end; it is back when the last step is."""

    steps: list[Fault]
    pause_s: float = 3.0
    timings: list[tuple[str, FaultTiming]] = field(default_factory=list)
    label: str = ""

    def __post_init__(self) -> None:
        self.label = "; then ".join(step.label for step in self.steps)

    async def inject(self) -> FaultTiming:
        for n, step in enumerate(self.steps):
            if n:
                await asyncio.sleep(self.pause_s)
            self.timings.append((step.label, await step.inject()))
        first, last = self.timings[0][1], self.timings[-1][1]
        back = None if any(t.back is None for _, t in self.timings) else last.back
        detail = " | ".join(f"{label}: {timing.detail}" for label, timing in self.timings)
        return FaultTiming(first.start, last.end, back, detail)
