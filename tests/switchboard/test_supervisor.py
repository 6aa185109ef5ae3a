"""The supervisor's own decisions, without starting the platform (tests/e2e does that)."""

from __future__ import annotations

import subprocess
import time

from switchboard.settings import SERVICE_NAMES, Settings
from switchboard.cli.supervisor import Supervisor, reap_orphans, restart_delay


def chosen_ports(env: dict[str, str]) -> dict[str, str]:
    """Every port left to the supervisor to choose: the defaults may be held by a platform a test left up."""
    env = {**env, "SWITCHBOARD_HTTP_PORT": "0"}
    for name in SERVICE_NAMES:
        env[f"SWITCHBOARD_{name.upper()}_GRPC_PORT"] = "0"
        env[f"SWITCHBOARD_{name.upper()}_METRICS_PORT"] = "0"
    return env


def test_every_port_it_chooses_is_distinct_embedded_servers_included(tmp_path) -> None:
    """An embedded PostgreSQL once took the port already promised to a service's gRPC server."""
    env = chosen_ports({"SWITCHBOARD_STATE_DIR": str(tmp_path)})
    for _ in range(20):
        supervisor = Supervisor(Settings.from_env(env))
        supervisor.run_dir.mkdir(parents=True, exist_ok=True)
        supervisor._assign_ports()
        s = supervisor.settings
        ports = [s.edge.port, *s.grpc_ports.values(), *s.telemetry.metrics_ports.values(),
                 *supervisor.infrastructure_ports.values()]
        assert set(supervisor.infrastructure_ports) == {"nats", "postgres"}
        assert len(set(ports)) == len(ports), ports


def test_configured_infrastructure_gets_no_port(tmp_path) -> None:
    settings = Settings.from_env(chosen_ports({"SWITCHBOARD_STATE_DIR": str(tmp_path),
                                               "SWITCHBOARD_NATS_URL": "nats://127.0.0.1:4222",
                                               "SWITCHBOARD_DATABASE_URL": "postgresql://x@127.0.0.1/x"}))
    supervisor = Supervisor(settings)
    supervisor.run_dir.mkdir(parents=True, exist_ok=True)
    supervisor._assign_ports()
    assert supervisor.infrastructure_ports == {}


def test_restarts_back_off_while_a_process_keeps_dying_and_start_fresh_after_a_good_run() -> None:
    restarts, delays = 0, []
    for _ in range(7):
        restarts, delay = restart_delay(restarts, ran_for_s=1.0)
        delays.append(delay)
    assert delays == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert restart_delay(restarts, ran_for_s=60.0) == (0, 0.5)


def test_orphans_are_reaped_and_the_children_it_polls_are_left_alone() -> None:
    polled = subprocess.Popen(["sleep", "1"])  # a service: its own Popen reads its exit
    orphan = subprocess.Popen(["true"])  # stands for an adopted orphan: nobody else waits for it
    deadline = time.monotonic() + 5
    reaped: list[int] = []
    while orphan.pid not in reaped and time.monotonic() < deadline:
        reaped += reap_orphans({polled.pid})
        time.sleep(0.01)
    assert orphan.pid in reaped
    assert polled.pid not in reaped
    assert polled.wait(5) == 0  # its exit status was left for its own Popen to read
