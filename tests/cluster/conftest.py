"""The clustered platform: a 3-node JetStream cluster on loopback, and `switchboard up` against it as
against a cluster of one's own (its URLs in SWITCHBOARD_NATS_URL, 3 stream replicas), with 2 processes
of every service. One per test module (a module's faults are its own): ~15 s to start on 2 cores."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchboard.cli.embedded import EmbeddedNatsCluster, free_port
from tests.platform_runner import Platform, base_env

SERVICES = ("INGEST", "ROUTER", "AI", "DELIVERY", "AUTH", "ANALYTICS")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: the platform on a 3-node NATS cluster (tests/cluster; `make cluster`)")


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNatsCluster]:
    cluster = EmbeddedNatsCluster(tmp_path_factory.mktemp("nats-cluster"), 3,
                                  [(free_port(), free_port(), free_port()) for _ in range(3)])
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def cluster_platform(nats_cluster: EmbeddedNatsCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    state = Path(tmp_path_factory.mktemp("cluster-platform")) / "state"
    env = base_env(state, SWITCHBOARD_NATS_URL=nats_cluster.url, SWITCHBOARD_STREAM_REPLICAS="3",
                   **{f"SWITCHBOARD_{name}_PROCESSES": "2" for name in SERVICES})
    platform = Platform(env).start(timeout=180)
    try:
        yield platform
    finally:
        try:
            platform.stop(timeout=60)
        except subprocess.TimeoutExpired:
            assert platform.process is not None
            platform.process.kill()
