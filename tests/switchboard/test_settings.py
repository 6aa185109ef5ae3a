import os
from pathlib import Path

import pytest

from switchboard.settings import DEFAULT_GRPC_PORTS, Settings, SettingsError, machine_processes


def test_defaults_need_no_environment() -> None:
    s = Settings.from_env({})
    assert s.nats_url is None and s.database_url is None
    assert s.edge.port == 8080 and s.grpc_ports == DEFAULT_GRPC_PORTS
    assert s.edge.max_body_bytes == 1024 * 1024
    assert s.delivery.allow_private_destinations is False
    assert s.state_dir == Path(".switchboard").absolute()
    assert s.grpc_target("router") == "127.0.0.1:50052"


def test_environment_overrides_every_kind_of_value() -> None:
    s = Settings.from_env({
        "SWITCHBOARD_NATS_URL": "nats://n:4222",
        "SWITCHBOARD_DATABASE_URL": "postgresql://db/x",
        "SWITCHBOARD_HTTP_PORT": "9000",
        "SWITCHBOARD_ROUTER_GRPC_PORT": "6000",
        "SWITCHBOARD_DELIVERY_GRPC_TARGET": "delivery.internal:443",
        "SWITCHBOARD_ALLOW_PRIVATE_DESTINATIONS": "yes",
        "SWITCHBOARD_PUBLISH_TIMEOUT": "0.5",
        "SWITCHBOARD_LOG_LEVEL": "debug",
    })
    assert s.require_infrastructure() == ("nats://n:4222", "postgresql://db/x")
    assert s.edge.port == 9000 and s.grpc_ports["router"] == 6000
    assert s.grpc_target("delivery") == "delivery.internal:443"
    assert s.delivery.allow_private_destinations is True
    assert s.publish_timeout_s == 0.5 and s.telemetry.log_level == "DEBUG"


def test_as_env_round_trips() -> None:
    s = Settings.from_env({"SWITCHBOARD_MAX_BODY_BYTES": "1234", "SWITCHBOARD_AI_GRPC_TARGET": "ai:1",
                           "SWITCHBOARD_NATS_URL": "nats://x:1", "SWITCHBOARD_MASTER_KEY": "k" * 40})
    assert Settings.from_env(s.as_env()) == s


@pytest.mark.parametrize("name,value,message", [
    ("SWITCHBOARD_HTTP_PORT", "eighty", "must be an integer"),
    ("SWITCHBOARD_MAX_BODY_BYTES", "0", "at least 1"),
    ("SWITCHBOARD_PUBLISH_TIMEOUT", "-1", "must be positive"),
    ("SWITCHBOARD_ALLOW_PRIVATE_DESTINATIONS", "maybe", "true or false"),
    ("SWITCHBOARD_LOG_FORMAT", "xml", "json or text"),
])
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value)


def test_a_single_service_needs_both_urls() -> None:
    with pytest.raises(SettingsError, match="SWITCHBOARD_NATS_URL and SWITCHBOARD_DATABASE_URL must be set"):
        Settings.from_env({}).require_infrastructure()


def test_trusted_proxies_are_parsed_as_networks() -> None:
    s = Settings.from_env({"SWITCHBOARD_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16,::1"})
    assert s.edge.trusted_proxies == ("10.0.0.1/32", "192.168.0.0/16", "::1/128")
    with pytest.raises(SettingsError, match="comma-separated CIDRs"):
        Settings.from_env({"SWITCHBOARD_TRUSTED_PROXIES": "proxy.internal"})


def test_up_runs_one_process_per_two_cores_of_each_scalable_service() -> None:
    assert [machine_processes(cores) for cores in (1, 2, 3, 4, 6, 8, 16, 64)] == [1, 1, 1, 2, 3, 4, 4, 4]


def test_processes_per_service_default_to_one_alone_and_to_the_cores_under_up() -> None:
    alone = Settings.from_env({"SWITCHBOARD_ROUTER_PROCESSES": "3"})
    assert alone.process_count("router") == 3 and alone.process_count("delivery") == 1
    under_up = alone.with_machine_processes()
    assert under_up.process_count("router") == 3
    auto = machine_processes(os.cpu_count() or 1)
    assert under_up.process_count("delivery") == under_up.process_count("ingest") == auto
    assert under_up.process_count("auth") == under_up.process_count("analytics") == 1
    assert Settings.from_env(under_up.as_env()).processes == under_up.processes
    # Every service may run several: their schedules (alerts, sweeps) run under a lease, once.
    assert Settings.from_env({"SWITCHBOARD_ANALYTICS_PROCESSES": "2"}).process_count("analytics") == 2


def test_a_cluster_gives_streams_three_replicas_and_every_service_two_processes_where_unset() -> None:
    clustered = Settings.from_env({"SWITCHBOARD_NATS_CLUSTER": "3",
                                   "SWITCHBOARD_DELIVERY_PROCESSES": "3"}).with_cluster()
    assert clustered.bus.replicas == 3
    assert clustered.process_count("delivery") == 3  # as set
    assert all(clustered.process_count(name) == 2 for name in ("auth", "ingest", "router", "ai", "analytics"))
    chosen = Settings.from_env({"SWITCHBOARD_NATS_CLUSTER": "5", "SWITCHBOARD_STREAM_REPLICAS": "5"}).with_cluster()
    assert chosen.bus.replicas == 5
    single = Settings.from_env({})
    assert single.with_cluster() == single
    for even in ("2", "4"):
        with pytest.raises(SettingsError, match="odd number of nodes"):
            Settings.from_env({"SWITCHBOARD_NATS_CLUSTER": even})
