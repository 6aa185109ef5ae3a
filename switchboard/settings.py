"""One typed settings object, read from the environment once at start-up.

Every ``SWITCHBOARD_*`` variable is read here and nowhere else; the object is
passed down to whatever needs it.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

__all__ = ["Settings", "SettingsError", "SERVICE_NAMES", "SCALABLE_SERVICES", "DEFAULT_GRPC_PORTS",
           "DEFAULT_METRICS_PORTS"]

SERVICE_NAMES = ("auth", "ingest", "router", "ai", "delivery", "analytics")
# The services whose work several processes of one machine can share
# (SWITCHBOARD_<SERVICE>_PROCESSES): the edge (one listening port, the kernel
# spreads connections), and the consumers of EVENTS and DELIVERIES (one
# durable consumer, each message to one of them). The others hold
# per-process schedules (alerts, retention sweeps) and stay single.
SCALABLE_SERVICES = ("ingest", "router", "delivery")
# Processes per scalable service when none is configured: one per two cores, at most this.
MAX_AUTO_PROCESSES = 4

DEFAULT_GRPC_PORTS = {
    "ingest": 50051,
    "router": 50052,
    "ai": 50053,
    "delivery": 50054,
    "auth": 50055,
    "analytics": 50056,
}

# Each service's /metrics (docs/observability.md).
DEFAULT_METRICS_PORTS = {
    "ingest": 9101,
    "router": 9102,
    "ai": 9103,
    "delivery": 9104,
    "auth": 9105,
    "analytics": 9106,
}


class SettingsError(ValueError):
    """A SWITCHBOARD_* variable has a value that cannot be used."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, allow_zero: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise SettingsError(f"{name} must be {'zero or ' if allow_zero else ''}positive, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name) or ""
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise SettingsError(f"{name} must be comma-separated CIDRs, got {item!r}") from None
    return tuple(networks)


def machine_processes(cores: int) -> int:
    """Processes of each scalable service `switchboard up` runs on a machine of ``cores``: one per
    two cores, at most MAX_AUTO_PROCESSES. Three scaled services share the cores with NATS,
    PostgreSQL and the rest; on 2 cores a second process of each cost ~35% more CPU per event
    at 500 events/s and moved nothing faster (docs/benchmarks.md)."""
    return max(1, min(cores // 2, MAX_AUTO_PROCESSES))


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults a fresh machine needs."""

    # Where embedded NATS/PostgreSQL data, the master key and the bootstrap
    # admin key live.
    state_dir: Path = Path(".switchboard")
    # Unset means "start an embedded server" (switchboard up only).
    nats_url: str | None = None
    database_url: str | None = None

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # Where senders reach the edge (a source's ingest_url); unset: the address a caller used.
    public_url: str = ""
    grpc_host: str = "127.0.0.1"
    grpc_ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_GRPC_PORTS))
    # host:port per service for clients; defaults to grpc_host:grpc_port.
    grpc_targets: Mapping[str, str] = field(default_factory=dict)

    max_body_bytes: int = 1024 * 1024
    # Per API key on /v1 and per source on /in (a source may set its own).
    key_rate_per_s: float = 50.0
    key_burst: int = 100
    source_rate_per_s: float = 500.0
    source_burst: int = 1000
    # How long the edge trusts a verified key without asking AuthService again:
    # the bound on how long a revoked key keeps working.
    auth_cache_ttl_s: float = 30.0
    # While AuthService cannot answer (it, or PostgreSQL, is down), a key it
    # verified within this long is still accepted: the bound on how long a
    # revoked key can keep working during such an outage.
    auth_cache_stale_s: float = 600.0
    # How often each ingest process compares the sources in PostgreSQL with
    # the KV bucket SOURCES and repairs the bucket.
    source_reconcile_interval_s: float = 30.0
    # Proxies (CIDRs) whose X-Forwarded-For the edge believes.
    trusted_proxies: tuple[str, ...] = ()
    # Sender gets 503 when JetStream has not acknowledged within this.
    publish_timeout_s: float = 5.0
    # Every gRPC call between services carries this deadline.
    rpc_timeout_s: float = 5.0
    # Outbound requests to private/loopback/link-local addresses are refused
    # unless the operator allows them (tests and local walkthroughs do).
    allow_private_destinations: bool = False
    # Networks (CIDRs) outbound requests may reach even though they are not
    # public, e.g. an internal receiver's subnet. Everything else private stays refused.
    destination_allowlist: tuple[str, ...] = ()
    delivery_timeout_s: float = 10.0
    delivery_max_attempts: int = 8
    # First retry delay; each next one doubles (services/delivery/retry.py).
    delivery_retry_base_s: float = 5.0
    # Sends in flight per delivery process. Many: a send mostly waits (for the
    # receiver, for the group commit its attempt shares), and the more wait
    # together, the more each statement and round trip is shared (64 gave about
    # two thirds of 256's deliveries/s on two cores).
    delivery_concurrency: int = 256
    # Per endpoint and delivery process, unless the endpoint sets its own.
    endpoint_max_in_flight: int = 16
    # An endpoint's circuit opens after this many consecutive failures and
    # stays open (nothing sent) for the cooldown, then lets one probe through.
    circuit_threshold: int = 5
    circuit_cooldown_s: float = 10.0
    # An endpoint failing without a single success for this long is disabled
    # (reason kept; re-enable through the API). 0 turns this off.
    endpoint_auto_disable_s: float = 5 * 24 * 3600
    router_concurrency: int = 64
    # The reply loop guard's last line: at most this many AI-drafted replies
    # per conversation in any reply_budget_window_s (docs/ai.md#replies).
    reply_budget: int = 10
    reply_budget_window_s: float = 3600.0

    # Stream limits, explicit so a runaway sender cannot fill the disk.
    stream_max_bytes: int = 1024**3
    stream_max_age_s: int = 7 * 24 * 3600
    stream_duplicate_window_s: int = 2 * 3600
    # 3 on a production NATS cluster; 1 for a single server.
    stream_replicas: int = 1
    # How long the edge remembers the id of an event that carries a provider
    # delivery id (or an API idempotency key), in the JetStream KV bucket
    # EVENT_DEDUP: a retry within it is answered duplicate and not published.
    # Longer than the stream's duplicate window (Stripe retries for 3 days).
    dedup_window_s: int = 3 * 24 * 3600
    dedup_max_bytes: int = 1024**3
    # The embedded nats-server's JetStream disk budget (0: its default); a
    # small one simulates a full disk (tests/chaos).
    nats_max_file_store: int = 0

    # The provider asked first when a tenant has no chain of its own; "local"
    # (no key, no network) always ends every chain.
    ai_provider: str = "local"
    # Deadline of one provider call; the longest wait for a provider's rate
    # budget before the next provider is asked; how long answers are cached.
    ai_timeout_s: float = 20.0
    ai_max_wait_s: float = 2.0
    ai_cache_ttl_s: float = 3600.0
    # Analytics retention (docs/analytics.md): raw attempts and minute rollups;
    # hour and day rollups; how often the pruning job runs.
    retention_attempts_days: int = 30
    retention_rollups_days: int = 400
    retention_prune_interval_s: float = 3600.0
    # Retention of the router's stored events and the delivery log (settled
    # deliveries and their attempts), in days (docs/operations.md#retention);
    # pruned every retention_prune_interval_s.
    retention_events_days: int = 30
    retention_deliveries_days: int = 30
    # Alert rules (docs/alerts.md), evaluated by analytics every
    # alert_interval_s over the last alert_window_s: an endpoint's failure rate
    # (with at least alert_min_attempts attempts), its p95 latency against its
    # previous day's (factor and floor), a tenant's deliveries waiting for a
    # retry; a resolved alert does not fire again within alert_cooldown_s.
    alert_interval_s: float = 60.0
    alert_window_s: float = 300.0
    alert_failure_rate: float = 0.5
    alert_min_attempts: int = 20
    alert_latency_factor: float = 3.0
    alert_latency_floor_ms: float = 500.0
    alert_backlog: int = 1000
    alert_cooldown_s: float = 600.0
    master_key: str | None = None
    # Master keys that sealed secrets before the current one (switchboard/secretbox.py): they still
    # open what they sealed, which is sealed again with the current key.
    previous_master_keys: tuple[str, ...] = ()
    # The services' credential on each other's gRPC ports; unset: derived from the master key
    # (switchboard/masterkey.py: service_token). Set it for a process that should not hold the master key.
    service_token: str | None = None
    # Set by `switchboard up` for its children (internal): they die with it.
    supervisor_pid: int | None = None
    # Processes per service (SWITCHBOARD_<SERVICE>_PROCESSES); 0: unset, which
    # is one, except under `switchboard up` (with_machine_processes).
    processes: Mapping[str, int] = field(default_factory=lambda: {name: 0 for name in SERVICE_NAMES})
    # Which of its service's processes this one is, from 0 (set by `switchboard up`).
    process_index: int = 0
    log_level: str = "INFO"
    log_format: str = "json"
    otel_console: bool = False
    # Observability (docs/observability.md). Where spans go: none, console or
    # otlp (to otlp_endpoint, else the standard OTEL_EXPORTER_OTLP_* variables).
    otel_exporter: str = "none"
    otlp_endpoint: str | None = None
    # Each service serves /metrics on its own port (0: any free one). The
    # edge's public HTTP port serves it only when asked (edge_metrics), or
    # behind `Authorization: Bearer <metrics_token>` when one is set: traffic
    # figures are nobody's business but the operator's.
    metrics_enabled: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_METRICS_PORTS))
    edge_metrics: bool = False
    metrics_token: str | None = None
    # How often JetStream consumer lag is read for the metrics.
    consumer_lag_interval_s: float = 15.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        p = "SWITCHBOARD_"
        ports = {
            name: _int(env, f"{p}{name.upper()}_GRPC_PORT", default, minimum=0)
            for name, default in DEFAULT_GRPC_PORTS.items()
        }
        targets = {
            name: env[f"{p}{name.upper()}_GRPC_TARGET"]
            for name in SERVICE_NAMES
            if env.get(f"{p}{name.upper()}_GRPC_TARGET")
        }
        otel_console = _bool(env, f"{p}OTEL_CONSOLE", False)
        otlp_endpoint = env.get(f"{p}OTLP_ENDPOINT") or None
        otel_exporter = (env.get(f"{p}OTEL_EXPORTER") or "").strip().lower()
        if not otel_exporter:
            standard = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            otel_exporter = "otlp" if otlp_endpoint or standard else "console" if otel_console else "none"
        if otel_exporter not in ("none", "console", "otlp"):
            raise SettingsError(f"{p}OTEL_EXPORTER must be none, console or otlp, got {otel_exporter!r}")
        metrics_ports = {
            name: _int(env, f"{p}{name.upper()}_METRICS_PORT", default, minimum=0)
            for name, default in DEFAULT_METRICS_PORTS.items()
        }
        processes = {name: _int(env, f"{p}{name.upper()}_PROCESSES", 0, minimum=0) for name in SERVICE_NAMES}
        for name, count in processes.items():
            if count > 1 and name not in SCALABLE_SERVICES:
                raise SettingsError(f"{p}{name.upper()}_PROCESSES: {name} runs as one process "
                                    f"(several processes: {', '.join(SCALABLE_SERVICES)})")
        alert_failure_rate = _float(env, f"{p}ALERT_FAILURE_RATE", 0.5, allow_zero=True)
        if alert_failure_rate >= 1:
            raise SettingsError(f"{p}ALERT_FAILURE_RATE must be below 1 (a share of attempts), got {alert_failure_rate}")
        duplicate_window_s = _int(env, f"{p}STREAM_DUPLICATE_WINDOW", 2 * 3600, minimum=1)
        dedup_window_s = _int(env, f"{p}DEDUP_WINDOW", 3 * 24 * 3600, minimum=1)
        if dedup_window_s < duplicate_window_s:
            raise SettingsError(f"{p}DEDUP_WINDOW ({dedup_window_s}) must be at least "
                                f"{p}STREAM_DUPLICATE_WINDOW ({duplicate_window_s})")
        log_format = env.get(f"{p}LOG_FORMAT", "json")
        if log_format not in ("json", "text"):
            raise SettingsError(f"{p}LOG_FORMAT must be json or text, got {log_format!r}")
        return cls(
            state_dir=Path(env.get(f"{p}STATE_DIR") or ".switchboard").absolute(),
            nats_url=env.get(f"{p}NATS_URL") or None,
            database_url=env.get(f"{p}DATABASE_URL") or None,
            http_host=env.get(f"{p}HTTP_HOST") or "127.0.0.1",
            http_port=_int(env, f"{p}HTTP_PORT", 8080),
            public_url=env.get(f"{p}PUBLIC_URL") or "",
            grpc_host=env.get(f"{p}GRPC_HOST") or "127.0.0.1",
            grpc_ports=ports,
            grpc_targets=targets,
            max_body_bytes=_int(env, f"{p}MAX_BODY_BYTES", 1024 * 1024, minimum=1),
            key_rate_per_s=_float(env, f"{p}KEY_RATE", 50.0),
            key_burst=_int(env, f"{p}KEY_BURST", 100, minimum=1),
            source_rate_per_s=_float(env, f"{p}SOURCE_RATE", 500.0),
            source_burst=_int(env, f"{p}SOURCE_BURST", 1000, minimum=1),
            auth_cache_ttl_s=_float(env, f"{p}AUTH_CACHE_TTL", 30.0),
            auth_cache_stale_s=_float(env, f"{p}AUTH_CACHE_STALE", 600.0, allow_zero=True),
            source_reconcile_interval_s=_float(env, f"{p}SOURCE_RECONCILE_INTERVAL", 30.0),
            trusted_proxies=_networks(env, f"{p}TRUSTED_PROXIES"),
            publish_timeout_s=_float(env, f"{p}PUBLISH_TIMEOUT", 5.0),
            rpc_timeout_s=_float(env, f"{p}RPC_TIMEOUT", 5.0),
            allow_private_destinations=_bool(env, f"{p}ALLOW_PRIVATE_DESTINATIONS", False),
            destination_allowlist=_networks(env, f"{p}DESTINATION_ALLOWLIST"),
            delivery_timeout_s=_float(env, f"{p}DELIVERY_TIMEOUT", 10.0),
            delivery_max_attempts=_int(env, f"{p}DELIVERY_MAX_ATTEMPTS", 8, minimum=1),
            delivery_retry_base_s=_float(env, f"{p}DELIVERY_RETRY_BASE", 5.0),
            delivery_concurrency=_int(env, f"{p}DELIVERY_CONCURRENCY", 256, minimum=1),
            endpoint_max_in_flight=_int(env, f"{p}ENDPOINT_MAX_IN_FLIGHT", 16, minimum=1),
            circuit_threshold=_int(env, f"{p}CIRCUIT_THRESHOLD", 5, minimum=1),
            circuit_cooldown_s=_float(env, f"{p}CIRCUIT_COOLDOWN", 10.0),
            endpoint_auto_disable_s=_float(env, f"{p}ENDPOINT_AUTO_DISABLE_AFTER", 5 * 24 * 3600,
                                           allow_zero=True),
            router_concurrency=_int(env, f"{p}ROUTER_CONCURRENCY", 64, minimum=1),
            reply_budget=_int(env, f"{p}REPLY_BUDGET", 10, minimum=1),
            reply_budget_window_s=_float(env, f"{p}REPLY_BUDGET_WINDOW", 3600.0),
            stream_max_bytes=_int(env, f"{p}STREAM_MAX_BYTES", 1024**3, minimum=1024 * 1024),
            stream_max_age_s=_int(env, f"{p}STREAM_MAX_AGE", 7 * 24 * 3600, minimum=60),
            stream_duplicate_window_s=duplicate_window_s,
            stream_replicas=_int(env, f"{p}STREAM_REPLICAS", 1, minimum=1),
            dedup_window_s=dedup_window_s,
            dedup_max_bytes=_int(env, f"{p}DEDUP_MAX_BYTES", 1024**3, minimum=1024 * 1024),
            nats_max_file_store=_int(env, f"{p}NATS_MAX_FILE_STORE", 0, minimum=0),
            ai_provider=env.get(f"{p}AI_PROVIDER") or "local",
            ai_timeout_s=_float(env, f"{p}AI_TIMEOUT", 20.0),
            ai_max_wait_s=_float(env, f"{p}AI_MAX_WAIT", 2.0, allow_zero=True),
            ai_cache_ttl_s=_float(env, f"{p}AI_CACHE_TTL", 3600.0, allow_zero=True),
            retention_attempts_days=_int(env, f"{p}RETENTION_ATTEMPTS_DAYS", 30, minimum=1),
            retention_rollups_days=_int(env, f"{p}RETENTION_ROLLUPS_DAYS", 400, minimum=1),
            retention_prune_interval_s=_float(env, f"{p}RETENTION_PRUNE_INTERVAL", 3600.0),
            retention_events_days=_int(env, f"{p}RETENTION_EVENTS_DAYS", 30, minimum=1),
            retention_deliveries_days=_int(env, f"{p}RETENTION_DELIVERIES_DAYS", 30, minimum=1),
            alert_interval_s=_float(env, f"{p}ALERT_INTERVAL", 60.0),
            alert_window_s=_float(env, f"{p}ALERT_WINDOW", 300.0),
            alert_failure_rate=alert_failure_rate,
            alert_min_attempts=_int(env, f"{p}ALERT_MIN_ATTEMPTS", 20, minimum=1),
            alert_latency_factor=_float(env, f"{p}ALERT_LATENCY_FACTOR", 3.0),
            alert_latency_floor_ms=_float(env, f"{p}ALERT_LATENCY_FLOOR_MS", 500.0, allow_zero=True),
            alert_backlog=_int(env, f"{p}ALERT_BACKLOG", 1000, minimum=0),
            alert_cooldown_s=_float(env, f"{p}ALERT_COOLDOWN", 600.0, allow_zero=True),
            master_key=env.get(f"{p}MASTER_KEY") or None,
            previous_master_keys=tuple(k.strip() for k in env.get(f"{p}PREVIOUS_MASTER_KEYS", "").split(",")
                                       if k.strip()),
            service_token=env.get(f"{p}SERVICE_TOKEN") or None,
            supervisor_pid=_int(env, f"{p}SUPERVISOR_PID", 0) or None,
            processes=processes,
            process_index=_int(env, f"{p}PROCESS_INDEX", 0),
            log_level=(env.get(f"{p}LOG_LEVEL") or "INFO").upper(),
            log_format=log_format,
            otel_console=otel_console,
            otel_exporter=otel_exporter,
            otlp_endpoint=otlp_endpoint,
            metrics_enabled=_bool(env, f"{p}METRICS", True),
            metrics_host=env.get(f"{p}METRICS_HOST") or "127.0.0.1",
            metrics_ports=metrics_ports,
            edge_metrics=_bool(env, f"{p}EDGE_METRICS", False),
            metrics_token=env.get(f"{p}METRICS_TOKEN") or None,
            consumer_lag_interval_s=_float(env, f"{p}CONSUMER_LAG_INTERVAL", 15.0),
        )

    @property
    def max_message_bytes(self) -> int:
        """The largest bus message: a body at the limit, plus its envelope.

        NATS must accept it: the embedded server is configured for it, and an
        external one needs ``max_payload`` at least this large.
        """
        return self.max_body_bytes * 2 + 64 * 1024

    def grpc_target(self, service: str) -> str:
        """The address clients dial for ``service``."""
        return self.grpc_targets.get(service) or f"{self.grpc_host}:{self.grpc_ports[service]}"

    def with_infrastructure(self, nats_url: str, database_url: str) -> "Settings":
        return replace(self, nats_url=nats_url, database_url=database_url)

    def require_infrastructure(self) -> tuple[str, str]:
        """The NATS and PostgreSQL URLs a single service needs to run."""
        missing = [
            name
            for name, value in (
                ("SWITCHBOARD_NATS_URL", self.nats_url),
                ("SWITCHBOARD_DATABASE_URL", self.database_url),
            )
            if not value
        ]
        if missing:
            raise SettingsError(
                f"{' and '.join(missing)} must be set to run one service alone "
                "(`switchboard up` starts embedded servers when they are unset)"
            )
        assert self.nats_url and self.database_url
        return self.nats_url, self.database_url

    def as_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        p = "SWITCHBOARD_"
        env = {
            f"{p}STATE_DIR": str(self.state_dir),
            f"{p}HTTP_HOST": self.http_host,
            f"{p}HTTP_PORT": str(self.http_port),
            f"{p}PUBLIC_URL": self.public_url,
            f"{p}GRPC_HOST": self.grpc_host,
            f"{p}MAX_BODY_BYTES": str(self.max_body_bytes),
            f"{p}KEY_RATE": str(self.key_rate_per_s),
            f"{p}KEY_BURST": str(self.key_burst),
            f"{p}SOURCE_RATE": str(self.source_rate_per_s),
            f"{p}SOURCE_BURST": str(self.source_burst),
            f"{p}AUTH_CACHE_TTL": str(self.auth_cache_ttl_s),
            f"{p}AUTH_CACHE_STALE": str(self.auth_cache_stale_s),
            f"{p}SOURCE_RECONCILE_INTERVAL": str(self.source_reconcile_interval_s),
            f"{p}TRUSTED_PROXIES": ",".join(self.trusted_proxies),
            f"{p}PUBLISH_TIMEOUT": str(self.publish_timeout_s),
            f"{p}RPC_TIMEOUT": str(self.rpc_timeout_s),
            f"{p}ALLOW_PRIVATE_DESTINATIONS": "true" if self.allow_private_destinations else "false",
            f"{p}DESTINATION_ALLOWLIST": ",".join(self.destination_allowlist),
            f"{p}DELIVERY_TIMEOUT": str(self.delivery_timeout_s),
            f"{p}DELIVERY_MAX_ATTEMPTS": str(self.delivery_max_attempts),
            f"{p}DELIVERY_RETRY_BASE": str(self.delivery_retry_base_s),
            f"{p}DELIVERY_CONCURRENCY": str(self.delivery_concurrency),
            f"{p}ENDPOINT_MAX_IN_FLIGHT": str(self.endpoint_max_in_flight),
            f"{p}CIRCUIT_THRESHOLD": str(self.circuit_threshold),
            f"{p}CIRCUIT_COOLDOWN": str(self.circuit_cooldown_s),
            f"{p}ENDPOINT_AUTO_DISABLE_AFTER": str(self.endpoint_auto_disable_s),
            f"{p}ROUTER_CONCURRENCY": str(self.router_concurrency),
            f"{p}REPLY_BUDGET": str(self.reply_budget),
            f"{p}REPLY_BUDGET_WINDOW": str(self.reply_budget_window_s),
            f"{p}STREAM_MAX_BYTES": str(self.stream_max_bytes),
            f"{p}STREAM_MAX_AGE": str(self.stream_max_age_s),
            f"{p}STREAM_DUPLICATE_WINDOW": str(self.stream_duplicate_window_s),
            f"{p}STREAM_REPLICAS": str(self.stream_replicas),
            f"{p}DEDUP_WINDOW": str(self.dedup_window_s),
            f"{p}DEDUP_MAX_BYTES": str(self.dedup_max_bytes),
            f"{p}NATS_MAX_FILE_STORE": str(self.nats_max_file_store),
            f"{p}AI_PROVIDER": self.ai_provider,
            f"{p}AI_TIMEOUT": str(self.ai_timeout_s),
            f"{p}AI_MAX_WAIT": str(self.ai_max_wait_s),
            f"{p}AI_CACHE_TTL": str(self.ai_cache_ttl_s),
            f"{p}RETENTION_ATTEMPTS_DAYS": str(self.retention_attempts_days),
            f"{p}RETENTION_ROLLUPS_DAYS": str(self.retention_rollups_days),
            f"{p}RETENTION_PRUNE_INTERVAL": str(self.retention_prune_interval_s),
            f"{p}RETENTION_EVENTS_DAYS": str(self.retention_events_days),
            f"{p}RETENTION_DELIVERIES_DAYS": str(self.retention_deliveries_days),
            f"{p}ALERT_INTERVAL": str(self.alert_interval_s),
            f"{p}ALERT_WINDOW": str(self.alert_window_s),
            f"{p}ALERT_FAILURE_RATE": str(self.alert_failure_rate),
            f"{p}ALERT_MIN_ATTEMPTS": str(self.alert_min_attempts),
            f"{p}ALERT_LATENCY_FACTOR": str(self.alert_latency_factor),
            f"{p}ALERT_LATENCY_FLOOR_MS": str(self.alert_latency_floor_ms),
            f"{p}ALERT_BACKLOG": str(self.alert_backlog),
            f"{p}ALERT_COOLDOWN": str(self.alert_cooldown_s),
            f"{p}LOG_LEVEL": self.log_level,
            f"{p}LOG_FORMAT": self.log_format,
            f"{p}OTEL_CONSOLE": "true" if self.otel_console else "false",
            f"{p}OTEL_EXPORTER": self.otel_exporter,
            f"{p}METRICS": "true" if self.metrics_enabled else "false",
            f"{p}METRICS_HOST": self.metrics_host,
            f"{p}EDGE_METRICS": "true" if self.edge_metrics else "false",
            f"{p}CONSUMER_LAG_INTERVAL": str(self.consumer_lag_interval_s),
        }
        for name, port in self.metrics_ports.items():
            env[f"{p}{name.upper()}_METRICS_PORT"] = str(port)
        if self.otlp_endpoint:
            env[f"{p}OTLP_ENDPOINT"] = self.otlp_endpoint
        if self.metrics_token:
            env[f"{p}METRICS_TOKEN"] = self.metrics_token
        for name, port in self.grpc_ports.items():
            env[f"{p}{name.upper()}_GRPC_PORT"] = str(port)
        for name, target in self.grpc_targets.items():
            env[f"{p}{name.upper()}_GRPC_TARGET"] = target
        if self.nats_url:
            env[f"{p}NATS_URL"] = self.nats_url
        if self.database_url:
            env[f"{p}DATABASE_URL"] = self.database_url
        if self.master_key:
            env[f"{p}MASTER_KEY"] = self.master_key
        if self.previous_master_keys:
            env[f"{p}PREVIOUS_MASTER_KEYS"] = ",".join(self.previous_master_keys)
        if self.service_token:
            env[f"{p}SERVICE_TOKEN"] = self.service_token
        if self.supervisor_pid:
            env[f"{p}SUPERVISOR_PID"] = str(self.supervisor_pid)
        for name, count in self.processes.items():
            env[f"{p}{name.upper()}_PROCESSES"] = str(count)
        env[f"{p}PROCESS_INDEX"] = str(self.process_index)
        return env

    def process_count(self, service: str) -> int:
        """How many processes of ``service`` run (unset: one)."""
        return self.processes.get(service) or 1

    def with_machine_processes(self) -> "Settings":
        """What `switchboard up` runs: where unset, :func:`machine_processes` for each scalable service."""
        auto = machine_processes(os.cpu_count() or 1)
        return replace(self, processes={name: count or (auto if name in SCALABLE_SERVICES else 1)
                                        for name, count in self.processes.items()})
