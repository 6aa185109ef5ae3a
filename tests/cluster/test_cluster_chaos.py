"""The platform on a 3-node JetStream cluster with 2 processes of every service, under steady traffic:
the node leading EVENTS is killed -9 and kept down while one process of each service is killed -9,
then it is restarted. The zero-loss ledger of the chaos suite is kept (tests/chaos/ledger.py).

Targets: no accepted event lost, nothing delivered that was never accepted (beyond what the sender
could not know), duplicates only as repeats of one ``webhook-id``, the edge never answering a 5xx
other than 503, every stream led by a live node within 10 s of the node's death and the traffic
accepted again within it, with no step taken by anyone.

The short form (the node, then an ingest and a delivery process) runs with `make test`; the full one
(every service) with `make cluster` (SWITCHBOARD_CLUSTER=full).
"""

from __future__ import annotations

import asyncio
import os

import pytest

from switchboard.cli.embedded import EmbeddedNatsCluster
from tests.chaos.faults import Fault, KillService
from tests.chaos.harness import ChaosReceiver
from tests.chaos.scenario import Plan, chaos_slice, run_scenario
from tests.chaos.targets import missed_targets
from tests.cluster.faults import KillNatsNode, RestartNatsNode, Steps
from tests.platform_runner import Platform

pytestmark = pytest.mark.cluster

FULL = os.environ.get("SWITCHBOARD_CLUSTER") == "full"
# Every stream led by a live node again, and the traffic accepted again, within this of a node's death.
NODE_RECOVERY_S = 10.0


def killed_services() -> tuple[str, ...]:
    return ("ingest", "router", "delivery", "ai", "auth", "analytics") if FULL else ("ingest", "delivery")


def accepted_again_after(events, since: float, until: float) -> float:
    """Seconds from ``since`` to the end of the sender's trouble before ``until``: the last answer other than
    202 in that span (0 when there was none)."""
    troubled = [a.at for e in events for a in e.answers if not a.accepted and since <= a.at < until]
    return max(troubled) - since if troubled else 0.0


def test_a_node_and_one_process_of_each_service_die_and_nothing_accepted_is_lost(
        cluster_platform: Platform, nats_cluster: EmbeddedNatsCluster) -> None:
    node = KillNatsNode(nats_cluster)
    steps: list[Fault] = [node, *(KillService(cluster_platform.state_dir, service) for service in killed_services()),
                          RestartNatsNode(node)]
    fault = Steps(steps, pause_s=3.0)
    seconds = 6.0 + len(steps) * 4.0 + 6.0
    plan = Plan("cluster-" + ("full" if FULL else "short"), count=int(20 * seconds), rate=20.0, fault_at_s=6.0)
    with ChaosReceiver() as receiver:
        source = chaos_slice(cluster_platform, receiver)
        sender_events: list = []
        report = asyncio.run(run_scenario(cluster_platform, receiver, source, fault, plan, sent=sender_events))
    lines = report.lines() + [f"  {label}: {timing.detail}" for label, timing in fault.timings]
    node_death, node_timing = fault.timings[0][1].start, fault.timings[0][1]
    next_step = fault.timings[1][1].start
    trouble_s = accepted_again_after(sender_events, node_death, next_step)
    lines.append(f"  after the node's death: streams led elsewhere in {node_timing.back_after_s:.1f} s, "
                 f"the sender's trouble over in {trouble_s:.1f} s" if node_timing.back_after_s is not None
                 else "  after the node's death: a stream still led by nobody")
    print("\n" + "\n".join(lines), flush=True)
    missed = missed_targets(report, in_flight_redelivered=True)
    if node_timing.back_after_s is None or node_timing.back_after_s > NODE_RECOVERY_S:
        missed.append(f"streams not led by a live node within {NODE_RECOVERY_S:.0f} s of the node's death")
    if trouble_s > NODE_RECOVERY_S:
        missed.append(f"webhooks refused for {trouble_s:.1f} s after the node's death (target {NODE_RECOVERY_S:.0f} s)")
    assert not missed, "\n".join(["missed targets:", *missed, "", *lines])
