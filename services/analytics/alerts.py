"""Alert rules over analytics' own data, each alert an event of the platform.

Every ``interval`` the evaluator measures four rules, from the tables the
ATTEMPTS consumer fills (never another service's schema):

- ``switchboard.alert.failure_rate``: an endpoint's attempts in the last
  ``window`` failed (retrying or final) more often than ``failure_rate``,
  with at least ``min_attempts`` attempts;
- ``switchboard.alert.latency``: an endpoint's p95 attempt latency in the
  last ``window`` is above ``latency_floor_ms`` and more than
  ``latency_factor`` times its p95 over the day before (hour rollups), both
  with at least ``min_attempts`` attempts;
- ``switchboard.alert.backlog``: a tenant's deliveries waiting for a retry
  (latest attempt ``retrying``, within ``backlog_horizon``) are more than
  ``backlog``;
- ``switchboard.alert.endpoint_disabled``: an endpoint's latest telling
  attempt in the window says it is disabled (the receiver answered 410, or
  the attempt failed with "endpoint disabled: ..."), with no success after
  it. Sticky: it resolves only when a later attempt of the endpoint succeeds.

An alert *fires* once when its condition starts and *resolves* once when
it clears (the other rules resolve when the condition no longer holds,
including when there are no attempts any more); a resolved alert does not
fire again for the same subject within ``cooldown``. The state is a row of
``analytics.alerts`` per (tenant, rule, subject), so a restart never fires
again, and it doubles as the outbox of the alert's event: transitions are
committed first, then published, then marked emitted; a publish that failed
is repeated the next round with the same event id, which JetStream (its
``Nats-Msg-Id``) and the router (its idempotent insert) collapse.

Each alert is an :class:`~switchboard.events.Event` of the tenant, from the
platform's own source ``switchboard``, of the rule's type, so tenants route
alerts like any other event. Loop guard: attempts delivering alert events
(type ``switchboard.alert.*``) never count towards any rule, so a failing
alert receiver cannot raise alerts about the alerts it fails to take.

This module has no NATS in it: publishing is a function it is given. Only
one analytics process evaluates at a time (a transaction-scoped advisory
lock; the others skip the round). Docs: docs/alerts.md.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC
from typing import Any
from collections.abc import Awaitable, Callable, Iterable

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.analytics.histogram import percentile
from switchboard.events import PLATFORM_SOURCE, Event
from switchboard.ids import derived_id
from switchboard.retention import periodic
from switchboard.settings import AnalyticsSettings

__all__ = ["ALERT_TYPE_PREFIX", "PLATFORM_SOURCE", "FAILURE_RATE", "LATENCY", "BACKLOG", "ENDPOINT_DISABLED",
           "RULES", "AlertPolicy", "Observation", "AlertState", "decide", "alert_event", "AlertEvaluator"]

logger = logging.getLogger(__name__)

ALERT_TYPE_PREFIX = "switchboard.alert."
# PLATFORM_SOURCE is the source id (and source type) of every event the platform
# itself emits. No source a tenant creates can have it: their ids are generated (``src_...``).
FAILURE_RATE = "switchboard.alert.failure_rate"
LATENCY = "switchboard.alert.latency"
BACKLOG = "switchboard.alert.backlog"
ENDPOINT_DISABLED = "switchboard.alert.endpoint_disabled"
RULES = (FAILURE_RATE, LATENCY, BACKLOG, ENDPOINT_DISABLED)
# Rules whose alert stays as it is when a round sees nothing about its subject.
_STICKY = frozenset({ENDPOINT_DISABLED})
# One evaluator at a time across analytics processes (pg_try_advisory_xact_lock).
_LOCK_KEY = 0x5B_A1_E7_00
_PUBLISH_BATCH = 500


@dataclass(frozen=True)
class AlertPolicy:
    """The thresholds, platform-wide (``SWITCHBOARD_ALERT_*``)."""

    window_s: float = 300.0
    failure_rate: float = 0.5
    min_attempts: int = 20
    latency_factor: float = 3.0
    latency_floor_ms: float = 500.0
    backlog: int = 1000
    cooldown_s: float = 600.0
    # A delivery whose latest attempt was a retry longer ago than this is not
    # counted as waiting: its next report was lost, or it was settled by hand.
    backlog_horizon_s: float = 86400.0

    @classmethod
    def from_settings(cls, settings: AnalyticsSettings) -> AlertPolicy:
        return cls(window_s=settings.alert_window_s, failure_rate=settings.alert_failure_rate,
                   min_attempts=settings.alert_min_attempts, latency_factor=settings.alert_latency_factor,
                   latency_floor_ms=settings.alert_latency_floor_ms, backlog=settings.alert_backlog,
                   cooldown_s=settings.alert_cooldown_s)


@dataclass(frozen=True)
class Observation:
    """What a round measured for one (tenant, rule, subject)."""

    tenant_id: str
    rule: str
    subject: str  # the endpoint id; '' for the whole tenant
    holds: bool  # whether the rule's condition holds
    value: float | None
    threshold: float | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.tenant_id, self.rule, self.subject


@dataclass(frozen=True)
class AlertState:
    """One row of ``analytics.alerts``: an alert's current (or last) state."""

    tenant_id: str
    rule: str
    subject: str
    state: str  # "firing" | "resolved"
    started_at: datetime
    resolved_at: datetime | None
    value: float | None
    threshold: float | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.tenant_id, self.rule, self.subject

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AlertState:
        return cls(row["tenant_id"], row["rule"], row["subject"], row["state"], row["started_at"],
                   row["resolved_at"], row["value"], row["threshold"], dict(row["details"] or {}))


def decide(current: AlertState | None, observed: Observation | None, now: datetime,
           cooldown_s: float) -> AlertState | None:
    """The new state of one alert after a round, or None when nothing changes.

    Fires when the condition holds and the alert is not firing (unless it
    resolved less than ``cooldown_s`` ago); resolves a firing alert when the
    condition does not hold, or was not observed at all, except for sticky
    rules, which stay as they are when not observed.
    """
    firing = current is not None and current.state == "firing"
    if observed is not None and observed.holds:
        if firing:
            return None
        if (current is not None and current.resolved_at is not None
                and (now - current.resolved_at).total_seconds() < cooldown_s):
            return None
        return AlertState(observed.tenant_id, observed.rule, observed.subject, "firing", now, None,
                          observed.value, observed.threshold, observed.details)
    if current is None or not firing or (observed is None and current.rule in _STICKY):
        return None
    return AlertState(current.tenant_id, current.rule, current.subject, "resolved", current.started_at, now,
                      observed.value if observed else None,
                      observed.threshold if observed else current.threshold,
                      observed.details if observed else {})


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z") if when else None


def alert_event(alert: AlertState, window_s: float) -> Event:
    """The platform event telling the tenant about a transition.

    Its id is stable per (tenant, rule, subject, started_at, state): publishing
    it again is a no-op at JetStream and at the router.
    """
    started = _iso(alert.started_at)
    assert started is not None
    payload = {
        "alert": alert.rule.removeprefix(ALERT_TYPE_PREFIX),
        "state": alert.state,
        "tenant_id": alert.tenant_id,
        "endpoint_id": alert.subject or None,
        "value": alert.value,
        "threshold": alert.threshold,
        "window_s": window_s,
        "started_at": started,
        "resolved_at": _iso(alert.resolved_at),
        "details": alert.details,
    }
    happened = alert.resolved_at if alert.state == "resolved" and alert.resolved_at else alert.started_at
    return Event(
        id=derived_id("evt", alert.tenant_id, alert.rule, alert.subject, started, alert.state),
        tenant_id=alert.tenant_id,
        source_id=PLATFORM_SOURCE,
        type=alert.rule,
        received_at=happened.timestamp(),
        payload=payload,
        occurred_at=happened.timestamp(),
        source_type=PLATFORM_SOURCE,
    )


# --- the rules: what each measures, from analytics' own tables ---------------------------------

_NOT_ALERTS = "NOT starts_with(event_type, 'switchboard.alert.')"
_DISABLED_MARK = "(status_code = 410 OR starts_with(coalesce(error, ''), 'endpoint disabled'))"


async def _failure_rate(conn, now: datetime, p: AlertPolicy) -> list[Observation]:
    cur = await conn.execute(f"""
        SELECT tenant_id, endpoint_id, count(*) AS attempts, count(*) FILTER (WHERE outcome <> 'succeeded') AS failed
        FROM analytics.attempts
        WHERE at > %(since)s AND at <= %(now)s AND {_NOT_ALERTS}
        GROUP BY tenant_id, endpoint_id""", {"since": now - timedelta(seconds=p.window_s), "now": now})
    observed = []
    for row in await cur.fetchall():
        attempts, failed = int(row["attempts"]), int(row["failed"])
        rate = failed / attempts
        observed.append(Observation(row["tenant_id"], FAILURE_RATE, row["endpoint_id"],
                                    attempts >= p.min_attempts and rate > p.failure_rate, round(rate, 4),
                                    p.failure_rate, {"attempts": attempts, "failed": failed}))
    return observed


async def _latency(conn, now: datetime, p: AlertPolicy) -> list[Observation]:
    since = now - timedelta(seconds=p.window_s)
    # The baseline: the endpoint's whole hours in the day before the window.
    baseline_until = since.replace(minute=0, second=0, microsecond=0)
    cur = await conn.execute(f"""
        WITH recent AS (
            SELECT tenant_id, endpoint_id, count(*) AS attempts,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95
            FROM analytics.attempts
            WHERE at > %(since)s AND at <= %(now)s AND {_NOT_ALERTS}
            GROUP BY tenant_id, endpoint_id
            HAVING count(*) >= %(min)s
        )
        SELECT r.tenant_id, r.endpoint_id, r.attempts, r.p95, b.hist, b.attempts AS baseline_attempts
        FROM recent r CROSS JOIN LATERAL (
            SELECT analytics.sum_histograms(latency_hist) AS hist, sum(attempts) AS attempts
            FROM analytics.rollups
            WHERE tenant_id = r.tenant_id AND dim = 'endpoint' AND grain = 'hour' AND key = r.endpoint_id
              AND bucket >= %(baseline_since)s AND bucket < %(baseline_until)s) b""",
        {"since": since, "now": now, "min": p.min_attempts, "baseline_since": baseline_until - timedelta(days=1),
         "baseline_until": baseline_until})
    observed = []
    for row in await cur.fetchall():
        p95, baseline_attempts = float(row["p95"]), int(row["baseline_attempts"] or 0)
        if baseline_attempts < p.min_attempts:
            continue  # nothing to compare with (a new endpoint): no verdict
        baseline = percentile(row["hist"], 0.95)
        holds = p95 > p.latency_floor_ms and p95 > p.latency_factor * baseline
        observed.append(Observation(row["tenant_id"], LATENCY, row["endpoint_id"], holds, round(p95, 1),
                                    round(max(p.latency_floor_ms, p.latency_factor * baseline), 1),
                                    {"attempts": int(row["attempts"]), "baseline_p95_ms": round(baseline, 1),
                                     "baseline_attempts": baseline_attempts, "factor": p.latency_factor,
                                     "floor_ms": p.latency_floor_ms}))
    return observed


async def _backlog(conn, now: datetime, p: AlertPolicy) -> list[Observation]:
    # The pending deliveries' partial index; the latest attempt tells the event type.
    cur = await conn.execute("""
        SELECT d.tenant_id, d.endpoint_id, count(*) AS pending
        FROM analytics.deliveries d
        JOIN analytics.attempts a ON a.delivery_id = d.delivery_id AND a.number = d.last_number
        WHERE d.last_outcome = 'retrying' AND d.last_at > %(horizon)s
          AND NOT starts_with(a.event_type, 'switchboard.alert.')
        GROUP BY d.tenant_id, d.endpoint_id""", {"horizon": now - timedelta(seconds=p.backlog_horizon_s)})
    per_tenant: dict[str, dict[str, int]] = {}
    for row in await cur.fetchall():
        per_tenant.setdefault(row["tenant_id"], {})[row["endpoint_id"]] = int(row["pending"])
    observed = []
    for tenant_id, endpoints in per_tenant.items():
        total = sum(endpoints.values())
        top = dict(sorted(endpoints.items(), key=lambda item: (-item[1], item[0]))[:10])
        observed.append(Observation(tenant_id, BACKLOG, "", total > p.backlog, float(total), float(p.backlog),
                                    {"pending": total, "endpoints": top}))
    return observed


async def _endpoint_disabled(conn, now: datetime, p: AlertPolicy) -> list[Observation]:
    cur = await conn.execute(f"""
        SELECT tenant_id, endpoint_id,
               max(at) FILTER (WHERE {_DISABLED_MARK}) AS disabled_at,
               (array_agg(coalesce(error, 'status ' || status_code) ORDER BY at DESC)
                   FILTER (WHERE {_DISABLED_MARK}))[1] AS reason,
               max(at) FILTER (WHERE outcome = 'succeeded') AS succeeded_at
        FROM analytics.attempts
        WHERE at > %(since)s AND at <= %(now)s AND {_NOT_ALERTS}
          AND (outcome = 'succeeded' OR {_DISABLED_MARK})
        GROUP BY tenant_id, endpoint_id""", {"since": now - timedelta(seconds=p.window_s), "now": now})
    observed = []
    for row in await cur.fetchall():
        disabled_at, succeeded_at = row["disabled_at"], row["succeeded_at"]
        holds = disabled_at is not None and (succeeded_at is None or disabled_at > succeeded_at)
        details = {"reason": row["reason"], "seen_at": _iso(disabled_at)} if holds else {}
        observed.append(Observation(row["tenant_id"], ENDPOINT_DISABLED, row["endpoint_id"], holds,
                                    1.0 if holds else 0.0, None, details))
    return observed


_MEASURES: tuple[Callable[[Any, datetime, AlertPolicy], Awaitable[list[Observation]]], ...] = (
    _failure_rate, _latency, _backlog, _endpoint_disabled)

_UPSERT = """
INSERT INTO analytics.alerts AS a (tenant_id, rule, subject, state, started_at, resolved_at, value, threshold,
                                   details, emitted, updated_at)
VALUES (%(tenant_id)s, %(rule)s, %(subject)s, %(state)s, %(started_at)s, %(resolved_at)s, %(value)s, %(threshold)s,
        %(details)s, false, %(now)s)
ON CONFLICT (tenant_id, rule, subject) DO UPDATE SET
    state = excluded.state, started_at = excluded.started_at, resolved_at = excluded.resolved_at,
    value = excluded.value, threshold = excluded.threshold, details = excluded.details, emitted = false,
    updated_at = excluded.updated_at
"""


class AlertEvaluator:
    """Measures the rules, records the transitions, publishes their events; see the module docstring."""

    def __init__(self, pool: AsyncConnectionPool[Any], policy: AlertPolicy, publish: Callable[[Event], Awaitable[Any]],
                 now: Callable[[], datetime] | None = None) -> None:
        self.pool = pool
        self.policy = policy
        self.publish = publish
        self.now = now or (lambda: datetime.now(UTC))

    async def evaluate(self) -> list[AlertState] | None:
        """One round of the rules: the transitions recorded (committed, not yet published), or None
        when another process is evaluating."""
        now = self.now()
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS got", (_LOCK_KEY,))
            if not (await cur.fetchone())["got"]:
                return None
            observed: dict[tuple[str, str, str], Observation] = {}
            for measure in _MEASURES:
                for observation in await measure(conn, now, self.policy):
                    observed[observation.key] = observation
            current = await self._states(conn, [k for k, o in observed.items() if o.holds])
            transitions = []
            for key in {*observed, *current}:
                new = decide(current.get(key), observed.get(key), now, self.policy.cooldown_s)
                if new is not None:
                    transitions.append(new)
            transitions.sort(key=lambda a: a.key)
            for alert in transitions:
                await conn.execute(_UPSERT, {
                    "tenant_id": alert.tenant_id, "rule": alert.rule, "subject": alert.subject,
                    "state": alert.state, "started_at": alert.started_at, "resolved_at": alert.resolved_at,
                    "value": alert.value, "threshold": alert.threshold, "details": Jsonb(alert.details),
                    "now": now})
        for alert in transitions:
            logger.info("alert %s", alert.state, extra={"tenant_id": alert.tenant_id, "rule": alert.rule,
                                                       "endpoint_id": alert.subject or None, "value": alert.value})
        return transitions

    async def _states(self, conn, holding: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], AlertState]:
        """The firing alerts, and the rows of alerts whose condition holds now (for the cooldown)."""
        keys = list(holding)
        cur = await conn.execute(
            """SELECT * FROM analytics.alerts WHERE state = 'firing'
               UNION
               SELECT a.* FROM analytics.alerts a
               JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k(tenant_id, rule, subject)
                 USING (tenant_id, rule, subject)""",
            ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]))
        return {(r["tenant_id"], r["rule"], r["subject"]): AlertState.from_row(r) for r in await cur.fetchall()}

    async def publish_pending(self) -> int:
        """Publish the events of transitions not yet published, oldest first; how many were.

        A failed publish stops the round (the broker is likely away); what is
        left is published next round under the same event ids.
        """
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM analytics.alerts WHERE NOT emitted ORDER BY updated_at LIMIT %s",
                                     (_PUBLISH_BATCH,))
            pending = [AlertState.from_row(r) for r in await cur.fetchall()]
        published = 0
        for alert in pending:
            await self.publish(alert_event(alert, self.policy.window_s))
            async with self.pool.connection() as conn:
                # Only the state published: a newer transition stays to be published.
                await conn.execute(
                    """UPDATE analytics.alerts SET emitted = true
                       WHERE tenant_id = %s AND rule = %s AND subject = %s AND state = %s AND started_at = %s""",
                    (alert.tenant_id, alert.rule, alert.subject, alert.state, alert.started_at))
            published += 1
        return published

    async def run_once(self) -> None:
        await self.evaluate()
        await self.publish_pending()

    async def run(self, interval_s: float, stopping: asyncio.Event) -> None:
        """Evaluate and publish every ``interval_s`` until ``stopping``.

        The first round is one interval after start: a process that was away
        first catches up with the attempt reports waiting for it, which would
        otherwise make it resolve (or fire) on stale data.
        """
        try:
            await asyncio.wait_for(stopping.wait(), interval_s)
            return
        except TimeoutError:
            pass
        await periodic(interval_s, self.run_once, stopping, "alert evaluation")
