"""One typed settings object, read from the environment once at start-up.

Every ``SWITCHBOARD_*`` variable is read here and nowhere else; the object is
passed down to whatever needs it.

Each setting is declared once, as a field of :class:`Settings` made by
:func:`setting`: its variable, how the variable's text is read (with its
bounds), its default and a line of documentation. Reading the environment
(:meth:`Settings.from_env`), writing it for a child process
(:meth:`Settings.as_env`) and the configuration table of README.md
(``python -m switchboard.settings --markdown``) all follow from the
declarations. A variable that is unset or empty leaves its setting at the
default. A variable named with ``<SERVICE>`` is one variable per service (the
setting maps service names to values); one named with another ``<...>`` stands
for every variable that begins as it does (the setting maps their names to
their text).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator, Mapping

__all__ = ["Settings", "SettingsError", "AccessSettings", "EdgeSettings", "RouterSettings", "AISettings",
           "DeliverySettings", "AnalyticsSettings", "BusSettings", "TelemetrySettings", "declarations",
           "declared_values", "SERVICE_NAMES", "SCALABLE_SERVICES", "DEFAULT_GRPC_PORTS", "DEFAULT_METRICS_PORTS",
           "markdown_table"]

SERVICE_NAMES = ("auth", "ingest", "router", "ai", "delivery", "analytics")
# The services that carry every event, which `switchboard up` runs as several processes on a machine
# of several cores: the edge (one listening port, the kernel spreads connections), and the consumers of
# EVENTS and DELIVERIES (one durable consumer, each message to one of them). Any service may run several
# (SWITCHBOARD_<SERVICE>_PROCESSES; replicas on a cluster): their schedules (alerts, retention sweeps)
# run once under a lease (switchboard/leases.py).
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


# How a variable's text becomes a setting's value: called with the variable's
# name (for the error) and its text (never empty).
Parse = Callable[[str, str], Any]


def text(name: str, raw: str) -> str:
    return raw


def upper(name: str, raw: str) -> str:
    return raw.upper()


def path(name: str, raw: str) -> Path:
    return Path(raw).absolute()


def words(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated values, blanks dropped."""
    return tuple(word.strip() for word in raw.split(",") if word.strip())


def integer(minimum: int = 0) -> Parse:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {value}")
        return value

    return parse


def number(zero: bool = False) -> Parse:
    """A positive number; with ``zero``, zero too."""
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if value < 0 or (value == 0 and not zero):
            raise SettingsError(f"{name} must be {'zero or ' if zero else ''}positive, got {value}")
        return value

    return parse


def share(name: str, raw: str) -> float:
    """A share of a whole: 0 up to, not including, 1."""
    value = number(zero=True)(name, raw)
    if value >= 1:
        raise SettingsError(f"{name} must be below 1 (a share of attempts), got {value}")
    return value


def boolean(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def choice(*options: str, normalise: Callable[[str], str] = str) -> Parse:
    def parse(name: str, raw: str) -> str:
        value = normalise(raw)
        if value not in options:
            raise SettingsError(f"{name} must be {', '.join(options[:-1])} or {options[-1]}, got {value!r}")
        return value

    return parse


def networks(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated CIDRs (a bare address is its own network)."""
    found = []
    for item in words(name, raw):
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise SettingsError(f"{name} must be comma-separated CIDRs, got {item!r}") from None
    return tuple(found)


def cluster_nodes(name: str, raw: str) -> int:
    """1, or an odd number of nodes: a JetStream cluster needs a majority of its nodes up."""
    value = integer(1)(name, raw)
    if value > 1 and value % 2 == 0:
        raise SettingsError(f"{name} must be 1 or an odd number of nodes (a JetStream cluster needs a "
                            f"majority), got {value}")
    return value


def pid(name: str, raw: str) -> int | None:
    return integer()(name, raw) or None


def setting(default: Any, env: str, doc: str, parse: Parse = text, *, shown: str | None = None,
            fallback: Callable[[Mapping[str, str], dict[str, Any]], Any] | None = None) -> Any:
    """A field of :class:`Settings`, read from the variable ``env`` with ``parse``.

    ``default`` may be a function that makes it (a fresh dict; a path from the
    working directory). ``doc`` is the setting's line in the configuration
    table, and ``shown`` its default there where the value alone would not say
    what happens. ``fallback`` chooses the value of an unset variable from the
    environment and the settings declared before it.
    """
    metadata = {"env": env, "parse": parse, "doc": doc, "shown": shown, "fallback": fallback}
    if callable(default):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


def group(cls: type) -> Any:
    """A field of :class:`Settings` holding the settings of one service or concern, declared in ``cls``."""
    return field(default_factory=cls, metadata={"group": cls})


def _exporter_by_endpoint(env: Mapping[str, str], chosen: dict[str, Any]) -> str:
    # A collector named anywhere means spans should go there; the older switch means console.
    standard = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if chosen["otlp_endpoint"] or standard:
        return "otlp"
    return "console" if chosen["otel_console"] else "none"


def machine_processes(cores: int) -> int:
    """Processes of each scalable service `switchboard up` runs on a machine of ``cores``: one per
    two cores, at most MAX_AUTO_PROCESSES. Three scaled services share the cores with NATS,
    PostgreSQL and the rest; on 2 cores a second process of each cost ~35% more CPU per event
    at 500 events/s and moved nothing faster (docs/benchmarks.md)."""
    return max(1, min(cores // 2, MAX_AUTO_PROCESSES))


@dataclass(frozen=True)
class AccessSettings:
    """How callers are admitted: API-key rates and the cache of verified keys, in every service that takes calls."""

    key_rate_per_s: float = setting(50.0, "SWITCHBOARD_KEY_RATE", parse=number(),
                                    doc="requests per second per API key on `/v1`")
    key_burst: int = setting(100, "SWITCHBOARD_KEY_BURST", parse=integer(1),
                             doc="requests per API key on `/v1` allowed in a burst above the rate")
    auth_cache_ttl_s: float = setting(
        30.0, "SWITCHBOARD_AUTH_CACHE_TTL", parse=number(),
        doc="seconds the edge trusts a verified key without asking AuthService again: a revoked key stops "
            "working within this")
    auth_cache_stale_s: float = setting(
        600.0, "SWITCHBOARD_AUTH_CACHE_STALE", parse=number(zero=True),
        doc="seconds after its last verification that a key is still accepted while AuthService (or its "
            "PostgreSQL) is unavailable; 0 turns this off "
            "([docs/operations.md](docs/operations.md#ingest-without-postgresql))")


@dataclass(frozen=True)
class EdgeSettings:
    """The HTTP edge: where it listens, what it accepts, whom it believes."""

    host: str = setting("127.0.0.1", "SWITCHBOARD_HTTP_HOST", doc="where the edge listens")
    port: int = setting(8080, "SWITCHBOARD_HTTP_PORT", parse=integer(),
                             doc="the edge's HTTP port (0 = pick a free port)")
    public_url: str = setting(
        "", "SWITCHBOARD_PUBLIC_URL",
        doc="where senders reach the edge, for a source's `ingest_url` (`<url>/in/<id>`); unset: the address "
            "the REST caller used (the edge forwards it to IngestService as `x-forwarded-host`), or the edge's "
            "own for a gRPC caller")
    max_body_bytes: int = setting(1024 * 1024, "SWITCHBOARD_MAX_BODY_BYTES", parse=integer(1),
                                  doc="webhook and API body limit in bytes (413 above)")
    source_rate_per_s: float = setting(
        500.0, "SWITCHBOARD_SOURCE_RATE", parse=number(),
        doc="requests per second per source on `/in`, unless the source sets its own `rate_limit`")
    source_burst: int = setting(
        1000, "SWITCHBOARD_SOURCE_BURST", parse=integer(1),
        doc="requests per source on `/in` allowed in a burst above the rate, unless the source sets its own")
    source_reconcile_interval_s: float = setting(
        30.0, "SWITCHBOARD_SOURCE_RECONCILE_INTERVAL", parse=number(),
        doc="seconds between each ingest process's comparison of the KV bucket `SOURCES` with PostgreSQL "
            "(a change lost while NATS was down heals within this)")
    trusted_proxies: tuple[str, ...] = setting(
        (), "SWITCHBOARD_TRUSTED_PROXIES", parse=networks,
        doc="comma-separated CIDRs of proxies whose `X-Forwarded-For` the edge believes")
    metrics: bool = setting(
        False, "SWITCHBOARD_EDGE_METRICS", parse=boolean,
        doc="`/metrics` on the edge's public HTTP port too (the ingest process's metrics port has them anyway)")
    metrics_token: str | None = setting(
        None, "SWITCHBOARD_METRICS_TOKEN",
        doc="turns the edge's `/metrics` on behind `Authorization: Bearer <token>`")


@dataclass(frozen=True)
class RouterSettings:
    """RouterService: routing concurrency, the reply budget, stored events."""

    concurrency: int = setting(64, "SWITCHBOARD_ROUTER_CONCURRENCY", parse=integer(1),
                                      doc="events handled at once per router process")
    reply_budget: int = setting(
        10, "SWITCHBOARD_REPLY_BUDGET", parse=integer(1),
        doc="AI-drafted replies per conversation within the reply budget window: the reply loop guard's "
            "last line ([docs/ai.md](docs/ai.md#replies-and-the-loop-guard))")
    reply_budget_window_s: float = setting(3600.0, "SWITCHBOARD_REPLY_BUDGET_WINDOW", parse=number(),
                                           doc="seconds: the window of the reply budget")
    retention_days: int = setting(30, "SWITCHBOARD_RETENTION_EVENTS_DAYS", parse=integer(1),
                                         doc="days the router keeps stored events")


@dataclass(frozen=True)
class AISettings:
    """AIService: the default provider, deadlines, the answer cache, each provider's own variables."""

    provider: str = setting(
        "local", "SWITCHBOARD_AI_PROVIDER",
        doc="the AI provider asked first when a tenant has no chain of its own (`local`, which needs no key "
            "and no network, always ends every chain)")
    timeout_s: float = setting(20.0, "SWITCHBOARD_AI_TIMEOUT", parse=number(),
                                  doc="seconds: the deadline of one provider call")
    max_wait_s: float = setting(
        2.0, "SWITCHBOARD_AI_MAX_WAIT", parse=number(zero=True),
        doc="seconds: the longest wait for a provider's rate budget before the next provider is asked")
    cache_ttl_s: float = setting(3600.0, "SWITCHBOARD_AI_CACHE_TTL", parse=number(zero=True),
                                    doc="seconds AI answers are cached")
    training_data: str = setting(
        "", "SWITCHBOARD_AI_TRAINING_DATA",
        doc="the directory of the local model's training rows (`corpus_train.jsonl`, `corpus_dev.jsonl`, "
            "`corpus_holdout.jsonl`), which tenants' own models are trained on; empty: the source tree's "
            "`tests/fixtures/ai` (the container image sets its copy)")
    # Each provider reads its own (plugins/ai/spec.py: ProviderSettings).
    provider_variables: Mapping[str, str] = setting(
        dict, "SWITCHBOARD_AI_<PROVIDER>_<NAME>", shown="none",
        doc="a provider's own settings: `_API_KEY` (without one it is skipped), `_BASE_URL` (any "
            "OpenAI-compatible server for `openai`), `_MODEL`, `_TIMEOUT`, and its rate budget "
            "`_REQUESTS_PER_MINUTE` / `_TOKENS_PER_MINUTE` (unlimited unless set; over it, urgent events go first)")


@dataclass(frozen=True)
class DeliverySettings:
    """DeliveryService: requests, retries, concurrency, per-endpoint limits, where deliveries may go."""

    timeout_s: float = setting(10.0, "SWITCHBOARD_DELIVERY_TIMEOUT", parse=number(),
                                        doc="seconds per delivery request")
    max_attempts: int = setting(8, "SWITCHBOARD_DELIVERY_MAX_ATTEMPTS", parse=integer(1),
                                         doc="attempts before a delivery is dead-lettered")
    retry_base_s: float = setting(
        5.0, "SWITCHBOARD_DELIVERY_RETRY_BASE", parse=number(),
        doc="first retry delay in seconds; each next one doubles (capped at 1 h, ±20% jitter)")
    # Many: a send mostly waits (for the receiver, for the group commit its
    # attempt shares), and the more wait together, the more each statement and
    # round trip is shared.
    concurrency: int = setting(
        256, "SWITCHBOARD_DELIVERY_CONCURRENCY", parse=integer(1),
        doc="sends in flight per delivery process (64 gave about two thirds of 256's throughput, "
            "[docs/benchmarks.md](docs/benchmarks.md#delivery-1-10-and-100-endpoints))")
    endpoint_max_in_flight: int = setting(
        16, "SWITCHBOARD_ENDPOINT_MAX_IN_FLIGHT", parse=integer(1),
        doc="deliveries to one endpoint in flight at once on the machine, split between its delivery "
            "processes (an endpoint may set its own): a slow receiver never holds the others' slots")
    endpoint_auto_disable_s: float = setting(
        5 * 24 * 3600, "SWITCHBOARD_ENDPOINT_AUTO_DISABLE_AFTER", parse=number(zero=True),
        doc="seconds an endpoint may fail without a success before it is disabled, its reason kept "
            "(an endpoint may set its own; 0: never)")
    # Outbound requests to private addresses are refused unless allowed: a
    # tenant's endpoint must not reach into the operator's network.
    allow_private_destinations: bool = setting(
        False, "SWITCHBOARD_ALLOW_PRIVATE_DESTINATIONS", parse=boolean,
        doc="allow deliveries to every private, loopback and link-local address (tests, local walkthroughs)")
    destination_allowlist: tuple[str, ...] = setting(
        (), "SWITCHBOARD_DESTINATION_ALLOWLIST", parse=networks,
        doc="comma-separated CIDRs deliveries may reach although they are not public (e.g. an internal "
            "receiver's subnet); everything else private stays refused")
    retention_days: int = setting(
        30, "SWITCHBOARD_RETENTION_DELIVERIES_DAYS", parse=integer(1),
        doc="days the delivery log keeps settled deliveries and their attempts (pending ones are never pruned)")


@dataclass(frozen=True)
class AnalyticsSettings:
    """AnalyticsService: retention of attempts and rollups, and the alert rules."""

    retention_attempts_days: int = setting(
        30, "SWITCHBOARD_RETENTION_ATTEMPTS_DAYS", parse=integer(1),
        doc="days analytics keeps its raw attempts and minute rollups "
            "([docs/operations.md](docs/operations.md#retention))")
    retention_rollups_days: int = setting(400, "SWITCHBOARD_RETENTION_ROLLUPS_DAYS", parse=integer(1),
                                          doc="days analytics keeps its hour and day rollups")
    alert_interval_s: float = setting(
        60.0, "SWITCHBOARD_ALERT_INTERVAL", parse=number(),
        doc="seconds between rounds of the alert rules ([docs/alerts.md](docs/alerts.md#settings))")
    alert_window_s: float = setting(300.0, "SWITCHBOARD_ALERT_WINDOW", parse=number(),
                                    doc="seconds of attempts each alert round looks at")
    alert_failure_rate: float = setting(0.5, "SWITCHBOARD_ALERT_FAILURE_RATE", parse=share,
                                        doc="failure rate above which an endpoint alerts (0 ≤ rate < 1)")
    alert_min_attempts: int = setting(
        20, "SWITCHBOARD_ALERT_MIN_ATTEMPTS", parse=integer(1),
        doc="attempts in the window (and in the latency baseline) below which no verdict is given")
    alert_latency_factor: float = setting(
        3.0, "SWITCHBOARD_ALERT_LATENCY_FACTOR", parse=number(),
        doc="an endpoint's p95 latency over this many times its previous day's alerts")
    alert_latency_floor_ms: float = setting(500.0, "SWITCHBOARD_ALERT_LATENCY_FLOOR_MS", parse=number(zero=True),
                                            doc="... and only above this many ms")
    alert_backlog: int = setting(1000, "SWITCHBOARD_ALERT_BACKLOG", parse=integer(),
                                 doc="deliveries waiting for a retry above which a tenant alerts")
    alert_cooldown_s: float = setting(600.0, "SWITCHBOARD_ALERT_COOLDOWN", parse=number(zero=True),
                                      doc="seconds after resolving before the same alert fires again")


@dataclass(frozen=True)
class BusSettings:
    """JetStream: stream limits and replicas, the dedup bucket, the embedded server's disk."""

    # Stream limits, explicit so a runaway sender cannot fill the disk.
    max_bytes: int = setting(1024**3, "SWITCHBOARD_STREAM_MAX_BYTES", parse=integer(1024 * 1024),
                                    doc="bytes every JetStream stream may hold (oldest dropped first)")
    max_age_s: int = setting(7 * 24 * 3600, "SWITCHBOARD_STREAM_MAX_AGE", parse=integer(60),
                                    doc="seconds every JetStream stream keeps a message")
    duplicate_window_s: int = setting(
        2 * 3600, "SWITCHBOARD_STREAM_DUPLICATE_WINDOW", parse=integer(1),
        doc="seconds within which JetStream drops a message whose id it has seen")
    replicas: int = setting(1, "SWITCHBOARD_STREAM_REPLICAS", parse=integer(1),
                                   doc="stream replicas (3 on a NATS cluster)")
    # Longer than the stream's duplicate window: Stripe retries for 3 days.
    dedup_window_s: int = setting(
        3 * 24 * 3600, "SWITCHBOARD_DEDUP_WINDOW", parse=integer(1),
        doc="seconds (at least the stream duplicate window) a provider delivery id or API idempotency key "
            "is answered `duplicate` and not published again (JetStream KV bucket `EVENT_DEDUP`) "
            "([docs/operations.md](docs/operations.md#dedup))")
    dedup_max_bytes: int = setting(
        1024**3, "SWITCHBOARD_DEDUP_MAX_BYTES", parse=integer(1024 * 1024),
        doc="bytes of the bucket `EVENT_DEDUP` (~82 an id: 1 GiB holds ~13 M, 3 days at ~50 ids/s; when "
            "full the oldest go first)")
    nats_cluster: int = setting(
        1, "SWITCHBOARD_NATS_CLUSTER", parse=cluster_nodes,
        doc="nodes of the embedded NATS `switchboard up` starts when `SWITCHBOARD_NATS_URL` is unset: 1, or "
            "3 (`switchboard up --cluster 3`) for a JetStream cluster on loopback, each node with its own "
            "store; streams then have 3 replicas and every service runs 2 processes where not set "
            "([docs/operations.md](docs/operations.md#a-cluster))")
    nats_max_file_store: int = setting(
        0, "SWITCHBOARD_NATS_MAX_FILE_STORE", parse=integer(),
        doc="the embedded nats-server's JetStream disk budget in bytes (0: nats-server's default); when it "
            "is full the edge answers 503")


@dataclass(frozen=True)
class TelemetrySettings:
    """Logs, traces and metrics, in every process."""

    log_level: str = setting("INFO", "SWITCHBOARD_LOG_LEVEL", parse=upper, doc="level of the logs on stderr")
    log_format: str = setting("json", "SWITCHBOARD_LOG_FORMAT", parse=choice("json", "text"),
                              doc="logs as `json`, or `text` for a terminal")
    otel_console: bool = setting(False, "SWITCHBOARD_OTEL_CONSOLE", parse=boolean,
                                 doc="the older switch for `SWITCHBOARD_OTEL_EXPORTER=console`")
    otlp_endpoint: str | None = setting(
        None, "SWITCHBOARD_OTLP_ENDPOINT",
        doc="OTLP/HTTP collector base URL (chooses `otlp`; the standard `OTEL_EXPORTER_OTLP_*` variables "
            "work too)")
    otel_exporter: str = setting(
        "none", "SWITCHBOARD_OTEL_EXPORTER", fallback=_exporter_by_endpoint,
        parse=choice("none", "console", "otlp", normalise=lambda raw: raw.strip().lower()),
        shown="`none`; `otlp` when a collector is set, `console` when `SWITCHBOARD_OTEL_CONSOLE` is",
        doc="where spans go: `none`, `console` or `otlp` ([docs/observability.md](docs/observability.md))")
    # Traffic figures are nobody's business but the operator's: the edge's
    # public port serves /metrics only when asked, or behind a token.
    metrics: bool = setting(True, "SWITCHBOARD_METRICS", parse=boolean,
                                    doc="each service's Prometheus `/metrics` on its own port")
    metrics_host: str = setting("127.0.0.1", "SWITCHBOARD_METRICS_HOST",
                                doc="where the services' `/metrics` listen")
    metrics_ports: Mapping[str, int] = setting(
        lambda: dict(DEFAULT_METRICS_PORTS), "SWITCHBOARD_<SERVICE>_METRICS_PORT", parse=integer(),
        doc="each service's `/metrics` port (0 = pick a free port)")
    consumer_lag_interval_s: float = setting(15.0, "SWITCHBOARD_CONSUMER_LAG_INTERVAL", parse=number(),
                                             doc="seconds between reads of JetStream consumer lag for the metrics")


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults a fresh machine needs: what the whole platform
    shares, then one group per service or concern (``settings.delivery.timeout_s``)."""

    state_dir: Path = setting(
        lambda: Path(".switchboard").absolute(), "SWITCHBOARD_STATE_DIR", parse=path, shown="`.switchboard`",
        doc="embedded NATS and PostgreSQL data, the master key, the bootstrap admin key, pid files")
    nats_url: str | None = setting(
        None, "SWITCHBOARD_NATS_URL", shown="unset: embedded (`switchboard up`)",
        doc="NATS server with JetStream")
    database_url: str | None = setting(
        None, "SWITCHBOARD_DATABASE_URL", shown="unset: embedded (`switchboard up`)",
        doc="PostgreSQL connection string")
    grpc_host: str = setting("127.0.0.1", "SWITCHBOARD_GRPC_HOST", doc="where gRPC servers bind")
    grpc_ports: Mapping[str, int] = setting(
        lambda: dict(DEFAULT_GRPC_PORTS), "SWITCHBOARD_<SERVICE>_GRPC_PORT", parse=integer(),
        doc="each service's gRPC port (0 = pick a free port)")
    grpc_targets: Mapping[str, str] = setting(
        dict, "SWITCHBOARD_<SERVICE>_GRPC_TARGET", shown="`<grpc host>:<port>`",
        doc="where clients reach a service (e.g. `auth:50055`)")
    publish_timeout_s: float = setting(5.0, "SWITCHBOARD_PUBLISH_TIMEOUT", parse=number(),
                                       doc="seconds to wait for a JetStream ack before answering 503")
    rpc_timeout_s: float = setting(5.0, "SWITCHBOARD_RPC_TIMEOUT", parse=number(),
                                   doc="seconds: the deadline of every call between services")
    circuit_threshold: int = setting(
        5, "SWITCHBOARD_CIRCUIT_THRESHOLD", parse=integer(1),
        doc="consecutive failures (5xx, timeouts, connection errors) after which an endpoint's circuit "
            "opens; shared by the delivery processes")
    circuit_cooldown_s: float = setting(
        10.0, "SWITCHBOARD_CIRCUIT_COOLDOWN", parse=number(),
        doc="seconds an open circuit sends nothing before it lets one probe through: how long deliveries "
            "wait after a receiver is back")
    retention_prune_interval_s: float = setting(3600.0, "SWITCHBOARD_RETENTION_PRUNE_INTERVAL", parse=number(),
                                                doc="seconds between pruning rounds, in every service")
    master_key: str | None = setting(
        None, "SWITCHBOARD_MASTER_KEY", shown="`master.key` in the state folder",
        doc="secret from which the API-key pepper and the key that seals source and endpoint secrets (and "
            "endpoint config credentials) at rest are derived "
            "([docs/operations.md](docs/operations.md#secrets-at-rest)); `switchboard keys rotate-master` "
            "replaces the state folder's")
    previous_master_keys: tuple[str, ...] = setting(
        (), "SWITCHBOARD_PREVIOUS_MASTER_KEYS", parse=words, shown="`master.key.previous` in the state folder",
        doc="master keys replaced, comma-separated: they still open what they sealed (sealed again at start) "
            "and verify API keys hashed under them (hashed again on use)")
    service_token: str | None = setting(
        None, "SWITCHBOARD_SERVICE_TOKEN", shown="derived from the master key",
        doc="the credential services present to each other's gRPC ports ([gRPC API](#grpc-api)); set it "
            "(from `switchboard keys service-token`) for a process that should not hold the master key")
    api_key: str | None = setting(
        None, "SWITCHBOARD_API_KEY", shown="`admin.key` in the state folder",
        doc="the API key `switchboard replay` presents when `--key` is not given")
    supervisor_pid: int | None = setting(
        None, "SWITCHBOARD_SUPERVISOR_PID", parse=pid,
        doc="internal: set by `switchboard up` for its children, which stop when it does")
    # 0 is unset: one alone, a machine's share under `switchboard up` (with_machine_processes).
    processes: Mapping[str, int] = setting(
        lambda: {name: 0 for name in SERVICE_NAMES}, "SWITCHBOARD_<SERVICE>_PROCESSES", parse=integer(),
        shown="`switchboard up`: one per two cores (at least 1, at most 4) for `INGEST`, `ROUTER` and "
              "`DELIVERY`; 1 otherwise",
        doc="processes of a service on this machine: the edge's processes share its HTTP port and each "
            "service's its gRPC port (`SO_REUSEPORT`, the kernel spreads connections), consumers share their "
            "durable consumer; per-endpoint rate limits and circuits are shared between delivery processes "
            "(see [Delivery](#delivery)); alert and retention rounds run in one process under a lease "
            "([docs/operations.md](docs/operations.md#a-cluster))")
    process_index: int = setting(
        0, "SWITCHBOARD_PROCESS_INDEX", parse=integer(),
        doc="internal: which of its service's processes this one is, from 0 (set by `switchboard up`)")


    access: AccessSettings = group(AccessSettings)
    edge: EdgeSettings = group(EdgeSettings)
    router: RouterSettings = group(RouterSettings)
    ai: AISettings = group(AISettings)
    delivery: DeliverySettings = group(DeliverySettings)
    analytics: AnalyticsSettings = group(AnalyticsSettings)
    bus: BusSettings = group(BusSettings)
    telemetry: TelemetrySettings = group(TelemetrySettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        settings = _read_group(cls, os.environ if env is None else env)
        settings._check_combinations()
        return settings

    def as_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        env: dict[str, str] = {}
        for declared, value in declared_values(self):
            name = declared.metadata["env"]
            if "<SERVICE>" in name:
                env.update({name.replace("<SERVICE>", service.upper()): _env_text(each)
                            for service, each in value.items()})
            elif "<" in name:
                env.update(value)
            elif value is not None:
                env[name] = _env_text(value)
        return env

    def _check_combinations(self) -> None:
        """What no single variable can be checked for alone."""
        if self.bus.dedup_window_s < self.bus.duplicate_window_s:
            raise SettingsError(f"SWITCHBOARD_DEDUP_WINDOW ({self.bus.dedup_window_s}) must be at least "
                                f"SWITCHBOARD_STREAM_DUPLICATE_WINDOW ({self.bus.duplicate_window_s})")

    @property
    def max_message_bytes(self) -> int:
        """The largest bus message: a body at the limit, plus its envelope.

        NATS must accept it: the embedded server is configured for it, and an
        external one needs ``max_payload`` at least this large.
        """
        return self.edge.max_body_bytes * 2 + 64 * 1024

    def grpc_target(self, service: str) -> str:
        """The address clients dial for ``service``."""
        return self.grpc_targets.get(service) or f"{self.grpc_host}:{self.grpc_ports[service]}"

    def with_group(self, name: str, **changes: Any) -> Settings:
        """These settings with some of one group's changed (``with_group("edge", port=0)``)."""
        return replace(self, **{name: replace(getattr(self, name), **changes)})

    def with_infrastructure(self, nats_url: str, database_url: str) -> Settings:
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

    def process_count(self, service: str) -> int:
        """How many processes of ``service`` run (unset: one)."""
        return self.processes.get(service) or 1

    def with_cluster(self) -> Settings:
        """What `switchboard up` runs on an embedded NATS cluster (``bus.nats_cluster`` nodes): streams
        with a replica on each of up to 3 nodes where the replicas were left at 1, and 2 processes of
        every service where none are set, so any one node or process can die."""
        nodes = self.bus.nats_cluster
        if nodes < 2:
            return self
        replicas = self.bus.replicas if self.bus.replicas > 1 else min(3, nodes)
        return replace(self, processes={name: count or 2 for name, count in self.processes.items()}) \
            .with_group("bus", replicas=replicas)

    def with_machine_processes(self) -> Settings:
        """What `switchboard up` runs: where unset, :func:`machine_processes` for each scalable service."""
        auto = machine_processes(os.cpu_count() or 1)
        return replace(self, processes={name: count or (auto if name in SCALABLE_SERVICES else 1)
                                        for name, count in self.processes.items()})


def _default(declared: Field[Any]) -> Any:
    if declared.default is not MISSING:
        return declared.default
    if declared.default_factory is MISSING:  # setting() always gives one or the other
        raise TypeError(f"setting {declared.name} has no default")
    return declared.default_factory()


def _variables(declared: Field) -> list[str]:
    """The variables a setting is read from, ``<SERVICE>`` spelled out."""
    name = declared.metadata["env"]
    if "<SERVICE>" in name:
        return [name.replace("<SERVICE>", service.upper()) for service in SERVICE_NAMES]
    return [] if "<" in name else [name]


def declarations(cls: type = Settings) -> Iterator[Field[Any]]:
    """Every setting of ``cls``, its groups' in their turn."""
    for declared in fields(cls):
        if "group" in declared.metadata:
            yield from declarations(declared.metadata["group"])
        else:
            yield declared


def declared_values(settings: Any) -> Iterator[tuple[Field[Any], Any]]:
    """Each setting's declaration with its value in ``settings``, its groups' in their turn."""
    for declared in fields(settings):
        value = getattr(settings, declared.name)
        if "group" in declared.metadata:
            yield from declared_values(value)
        else:
            yield declared, value


def _read_group(cls: type, env: Mapping[str, str]) -> Any:
    chosen: dict[str, Any] = {}
    for declared in fields(cls):
        if "group" in declared.metadata:
            chosen[declared.name] = _read_group(declared.metadata["group"], env)
        else:
            chosen[declared.name] = _read(declared, env, chosen)
    return cls(**chosen)


# Every variable some setting reads by name: a variable family (``<PROVIDER>``) leaves these out.
_DECLARED = frozenset(variable for declared in declarations() for variable in _variables(declared))


def _read(declared: Field, env: Mapping[str, str], chosen: dict[str, Any]) -> Any:
    name, parse = declared.metadata["env"], declared.metadata["parse"]
    if "<SERVICE>" in name:
        read = {}
        for service in SERVICE_NAMES:
            variable = name.replace("<SERVICE>", service.upper())
            if env.get(variable):
                read[service] = parse(variable, env[variable])
        return {**_default(declared), **read}
    if "<" in name:
        prefix = name[:name.index("<")]
        return {variable: raw for variable, raw in env.items()
                if raw and variable.startswith(prefix) and variable not in _DECLARED}
    raw = env.get(name)
    if raw:
        return parse(name, raw)
    fallback = declared.metadata["fallback"]
    return fallback(env, chosen) if fallback else _default(declared)


def _env_text(value: Any) -> str:
    """A value as its variable spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _shown(value: Any) -> str:
    """A default as the configuration table states it."""
    if value is None or value == "":
        return "unset"
    if isinstance(value, (tuple, Mapping)) and not value:
        return "none"
    if isinstance(value, (bool, str, Path)):
        return f"`{_env_text(value)}`"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{key} {each}" for key, each in value.items())
    return _env_text(value)


def markdown_table() -> str:
    """The configuration tables of README.md, from the declarations: the platform's, then each group's."""
    def table(cls: type) -> str:
        rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
        for declared in fields(cls):
            meta = declared.metadata
            if "group" not in meta:
                shown = meta["shown"] or _shown(_default(declared))
                rows.append(f"| `{meta['env']}` | {shown} | {meta['doc']} |")
        return "\n".join(rows) + "\n"

    sections = ["**Platform** (`settings`): what every process shares.\n\n" + table(Settings)]
    for declared in fields(Settings):
        if "group" in declared.metadata:
            cls = declared.metadata["group"]
            sections.append(f"**{declared.name}** (`settings.{declared.name}`): {cls.__doc__}\n\n{table(cls)}")
    return "\n".join(sections)


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m switchboard.settings --markdown  (prints README.md's configuration table)")
    sys.stdout.write(markdown_table())
