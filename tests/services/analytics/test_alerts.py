"""Alert rules against real PostgreSQL, with attempts loaded through analytics' own ingestion path:
firing once, not firing again, resolving, the cooldown, restarts, the loop guard, thresholds, and
the events published."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta, UTC

import pytest

from services.analytics.alerts import (
    BACKLOG,
    ENDPOINT_DISABLED,
    FAILURE_RATE,
    LATENCY,
    AlertEvaluator,
    AlertPolicy,
    AlertState,
    Observation,
    decide,
)
from services.analytics.ledger import AttemptLedger
from switchboard.events import Event
from switchboard.ids import is_id
from switchboard.settings import Settings, SettingsError
from tests.services.analytics.conftest import NOW, attempt

POLICY = AlertPolicy(window_s=300, failure_rate=0.5, min_attempts=10, latency_factor=3.0, latency_floor_ms=500,
                     backlog=50, cooldown_s=600)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Published(list):
    """The events an evaluator published, in order."""

    fail = False

    async def __call__(self, event: Event) -> None:
        if self.fail:
            raise ConnectionError("nats away")
        self.append(event)

    def of(self, rule: str) -> list[tuple[str, str | None]]:
        return [(e.payload["state"], e.payload["endpoint_id"]) for e in self if e.type == rule]


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def evaluator(ledger: AttemptLedger, clock: Clock, published: Published) -> AlertEvaluator:
    return AlertEvaluator(ledger.pool, POLICY, published, now=clock)


async def load(ledger: AttemptLedger, tag: str, count: int, outcome: str, *, ago_s: float = 60, **kw) -> None:
    """``count`` attempts ``ago_s`` seconds before NOW, one delivery each (the first attempt)."""
    await ledger.record_batch([attempt(f"{tag}{n}", 1, outcome, at=NOW - timedelta(seconds=ago_s - n * 0.01), **kw)
                               for n in range(count)])


async def test_a_failure_rate_alert_fires_once_then_resolves_once(ledger, evaluator, clock, published) -> None:
    await load(ledger, "bad", 12, "retrying", endpoint="ep_bad", status_code=500, error="receiver answered 500")
    await load(ledger, "ok", 3, "succeeded", endpoint="ep_bad")
    await load(ledger, "fine", 30, "succeeded", endpoint="ep_fine")

    await evaluator.run_once()
    [event] = published
    assert (event.type, event.source_id, event.source_type, event.tenant_id) == (
        FAILURE_RATE, "switchboard", "switchboard", "t1")
    assert is_id(event.id, "evt") and event.received_at == NOW.timestamp()
    assert {k: event.payload[k] for k in ("alert", "state", "endpoint_id", "value", "threshold", "window_s",
                                          "started_at", "resolved_at")} == {
        "alert": "failure_rate", "state": "firing", "endpoint_id": "ep_bad", "value": 0.8, "threshold": 0.5,
        "window_s": 300, "started_at": "2026-03-10T12:30:00Z", "resolved_at": None}
    assert event.payload["details"] == {"attempts": 15, "failed": 12}

    # Still failing a minute later: nothing new.
    clock.now = NOW + timedelta(minutes=1)
    await evaluator.run_once()
    assert len(published) == 1

    # The failures age out of the window: resolved, once, naming when it started.
    clock.now = NOW + timedelta(minutes=6)
    await evaluator.run_once()
    await evaluator.run_once()
    assert published.of(FAILURE_RATE) == [("firing", "ep_bad"), ("resolved", "ep_bad")]
    resolved = published[1]
    assert resolved.payload["started_at"] == "2026-03-10T12:30:00Z"
    assert resolved.payload["resolved_at"] == "2026-03-10T12:36:00Z" and resolved.id != event.id


async def test_thresholds_a_rate_at_the_threshold_or_too_few_attempts_do_not_fire(ledger, evaluator,
                                                                                 published) -> None:
    await load(ledger, "half", 10, "retrying", endpoint="ep_half")
    await load(ledger, "halfok", 10, "succeeded", endpoint="ep_half")  # exactly 0.5: not above
    await load(ledger, "few", 9, "failed", endpoint="ep_few")  # all failing, but 9 < 10 attempts
    await load(ledger, "old", 50, "failed", endpoint="ep_old", ago_s=301)  # before the window
    await evaluator.run_once()
    assert published.of(FAILURE_RATE) == []

    await load(ledger, "few_more", 1, "failed", endpoint="ep_few")
    await evaluator.run_once()
    assert published.of(FAILURE_RATE) == [("firing", "ep_few")]


async def test_a_restarted_evaluator_does_not_fire_again(ledger, clock, published) -> None:
    await load(ledger, "bad", 20, "failed", endpoint="ep_bad")
    await AlertEvaluator(ledger.pool, POLICY, published, now=clock).run_once()
    await AlertEvaluator(ledger.pool, POLICY, published, now=clock).run_once()
    assert published.of(FAILURE_RATE) == [("firing", "ep_bad")]


async def test_a_resolved_alert_waits_for_the_cooldown_before_firing_again(ledger, evaluator, clock,
                                                                           published) -> None:
    await load(ledger, "bad", 20, "failed", endpoint="ep_bad")
    await evaluator.run_once()
    clock.now = NOW + timedelta(minutes=6)
    await evaluator.run_once()  # resolved at +6 min
    # Failing again at +7 min: within the 10-minute cooldown, nothing.
    await ledger.record_batch([attempt(f"again{n}", 1, "failed", endpoint="ep_bad",
                                       at=NOW + timedelta(minutes=7, seconds=n)) for n in range(20)])
    clock.now = NOW + timedelta(minutes=8)
    await evaluator.run_once()
    assert published.of(FAILURE_RATE) == [("firing", "ep_bad"), ("resolved", "ep_bad")]
    # Still failing once the cooldown is over: a new alert, with a new start and a new id.
    await ledger.record_batch([attempt(f"more{n}", 1, "failed", endpoint="ep_bad",
                                       at=NOW + timedelta(minutes=16, seconds=n)) for n in range(20)])
    clock.now = NOW + timedelta(minutes=17)
    await evaluator.run_once()
    assert published.of(FAILURE_RATE) == [("firing", "ep_bad"), ("resolved", "ep_bad"), ("firing", "ep_bad")]
    assert published[2].payload["started_at"] == "2026-03-10T12:47:00Z"
    assert len({e.id for e in published}) == 3


async def test_loop_guard_attempts_delivering_alerts_never_count(ledger, evaluator, published) -> None:
    # The tenant's alert receiver is failing, disabled and slow at taking alerts; nothing alerts about that.
    await load(ledger, "alerts", 40, "retrying", endpoint="ep_alerts", event_type="switchboard.alert.failure_rate",
               latency_ms=9000)
    await load(ledger, "gone", 2, "failed", endpoint="ep_alerts", event_type="switchboard.alert.backlog",
               status_code=410, error="receiver answered 410 Gone")
    await evaluator.run_once()
    assert list(published) == []


async def test_latency_alert_compares_the_window_with_the_day_before(ledger, evaluator, clock, published) -> None:
    # Yesterday: 50 ms for both endpoints (hour rollups), 30 attempts each.
    for endpoint in ("ep_slow", "ep_quick"):
        await ledger.record_batch([attempt(f"y{endpoint}{n}", 1, endpoint=endpoint, latency_ms=50,
                                           at=NOW - timedelta(hours=3, minutes=n)) for n in range(30)])
    # Now: ep_slow at 800 ms (16x, over the floor); ep_quick at 400 ms (8x, but under the 500 ms floor).
    await load(ledger, "s", 12, "succeeded", endpoint="ep_slow", latency_ms=800)
    await load(ledger, "q", 12, "succeeded", endpoint="ep_quick", latency_ms=400)
    # ep_new is slow but has no baseline: no verdict.
    await load(ledger, "n", 12, "succeeded", endpoint="ep_new", latency_ms=5000)
    await evaluator.run_once()
    [event] = published
    assert published.of(LATENCY) == [("firing", "ep_slow")]
    assert event.payload["value"] == 800.0 and 40 <= event.payload["details"]["baseline_p95_ms"] <= 63
    # The bar is the higher of the floor and the factor times the baseline (here the floor).
    assert event.payload["threshold"] == 500.0

    # Quick again in the next window: resolved.
    await ledger.record_batch([attempt(f"later{n}", 1, endpoint="ep_slow", latency_ms=50,
                                       at=NOW + timedelta(minutes=5, seconds=n)) for n in range(12)])
    clock.now = NOW + timedelta(minutes=6)
    await evaluator.run_once()
    assert published.of(LATENCY) == [("firing", "ep_slow"), ("resolved", "ep_slow")]
    assert published[-1].payload["value"] == 50.0


async def test_backlog_alert_counts_a_tenants_deliveries_waiting_for_a_retry(ledger, clock, published) -> None:
    evaluator = AlertEvaluator(ledger.pool, replace(POLICY, backlog=5), published, now=clock)
    await load(ledger, "w", 4, "retrying", endpoint="ep_a")
    await load(ledger, "x", 2, "retrying", endpoint="ep_b", ago_s=3600)  # long retries count too
    await load(ledger, "other", 6, "retrying", tenant="t2")  # another tenant's own count
    await load(ledger, "stale", 6, "retrying", endpoint="ep_c", ago_s=2 * 86400)  # past the horizon
    await load(ledger, "al", 6, "retrying", endpoint="ep_c", event_type="switchboard.alert.backlog")  # loop guard
    await evaluator.run_once()
    assert published.of(BACKLOG) == [("firing", None), ("firing", None)]
    mine = next(e for e in published if e.tenant_id == "t1")
    assert mine.payload["value"] == 6 and mine.payload["threshold"] == 5
    assert mine.payload["details"] == {"pending": 6, "endpoints": {"ep_a": 4, "ep_b": 2}}

    # Three of t1's deliveries succeed on their second attempt: 3 waiting, resolved; t2 still firing.
    await ledger.record_batch([attempt(f"w{n}", 2, at=NOW + timedelta(seconds=n), endpoint="ep_a") for n in range(3)])
    clock.now = NOW + timedelta(minutes=1)
    await evaluator.run_once()
    assert [(e.tenant_id, e.payload["state"]) for e in published[2:]] == [("t1", "resolved")]
    assert published[2].payload["value"] == 3


async def test_endpoint_disabled_fires_on_a_410_or_a_disabled_refusal_and_resolves_on_a_success(
        ledger, evaluator, clock, published) -> None:
    await load(ledger, "gone", 1, "failed", endpoint="ep_gone", status_code=410, error="receiver answered 410 Gone")
    await load(ledger, "off", 2, "failed", endpoint="ep_off", status_code=None,
               error="endpoint disabled: failing since 2026-03-05T10:00:00+00:00: receiver answered 503")
    await load(ledger, "up", 5, "succeeded", endpoint="ep_up")
    # Disabled, then re-enabled and succeeding in the same window: nothing to say.
    await load(ledger, "back", 1, "failed", endpoint="ep_back", status_code=410, ago_s=120)
    await load(ledger, "backok", 1, "succeeded", endpoint="ep_back", ago_s=60)
    await evaluator.run_once()
    assert sorted(published.of(ENDPOINT_DISABLED)) == [("firing", "ep_gone"), ("firing", "ep_off")]
    off = next(e for e in published if e.payload["endpoint_id"] == "ep_off")
    assert off.payload["details"]["reason"].startswith("endpoint disabled: failing since")
    assert off.payload["threshold"] is None

    # No attempts for an hour: a disabled endpoint stays disabled (no resolution for lack of news).
    clock.now = NOW + timedelta(hours=1)
    await evaluator.run_once()
    assert len(published) == 2
    # Re-enabled: its next delivery succeeds.
    await ledger.record_batch([attempt("fixed", 1, endpoint="ep_gone", at=clock.now - timedelta(seconds=5))])
    await evaluator.run_once()
    assert published.of(ENDPOINT_DISABLED)[2:] == [("resolved", "ep_gone")]


async def test_an_unpublished_alert_is_published_next_round_under_the_same_id(ledger, evaluator, clock,
                                                                              published) -> None:
    await load(ledger, "bad", 20, "failed", endpoint="ep_bad")
    published.fail = True
    with pytest.raises(ConnectionError):
        await evaluator.run_once()
    published.fail = False
    clock.now = NOW + timedelta(seconds=30)
    await evaluator.run_once()
    [event] = published
    # The transition was recorded in the failed round: it keeps that round's start.
    assert event.payload["started_at"] == "2026-03-10T12:30:00Z"
    await evaluator.run_once()
    assert len(published) == 1


async def test_only_one_evaluator_runs_a_round_at_a_time(ledger, evaluator, clock, published) -> None:
    await load(ledger, "bad", 20, "failed", endpoint="ep_bad")
    async with ledger.pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x5BA1E700,))
        assert await evaluator.evaluate() is None
    assert [a.state for a in await evaluator.evaluate()] == ["firing"]


def test_decide_is_a_state_machine() -> None:
    now = NOW
    holds = Observation("t1", FAILURE_RATE, "ep", True, 0.9, 0.5)
    clear = Observation("t1", FAILURE_RATE, "ep", False, 0.1, 0.5)
    firing = AlertState("t1", FAILURE_RATE, "ep", "firing", now - timedelta(minutes=5), None, 0.9, 0.5)
    resolved = AlertState("t1", FAILURE_RATE, "ep", "resolved", now - timedelta(minutes=20),
                          now - timedelta(minutes=5), 0.1, 0.5)
    fired = decide(None, holds, now, 600)
    assert fired is not None and fired.state == "firing"
    assert decide(firing, holds, now, 600) is None
    assert decide(None, clear, now, 600) is None and decide(None, None, now, 600) is None
    cleared = decide(firing, clear, now, 600)
    assert cleared is not None and (cleared.state, cleared.started_at) == ("resolved", firing.started_at)
    unobserved = decide(firing, None, now, 600)
    assert unobserved is not None and unobserved.state == "resolved"  # nothing observed: not failing any more
    assert decide(resolved, holds, now, 600) is None  # within the cooldown
    refired = decide(resolved, holds, now, 300)
    assert refired is not None and refired.state == "firing"
    sticky = AlertState("t1", ENDPOINT_DISABLED, "ep", "firing", now, None, 1.0, None)
    assert decide(sticky, None, now, 600) is None


def test_alert_settings_come_from_the_environment() -> None:
    defaults = Settings.from_env({})
    assert AlertPolicy.from_settings(defaults.analytics) == AlertPolicy()
    analytics = defaults.analytics
    assert (analytics.alert_interval_s, analytics.alert_window_s, analytics.alert_failure_rate,
            analytics.alert_min_attempts, analytics.alert_latency_factor, analytics.alert_latency_floor_ms,
            analytics.alert_backlog) == (60.0, 300.0, 0.5, 20, 3.0, 500.0, 1000)
    settings = Settings.from_env({"SWITCHBOARD_ALERT_INTERVAL": "5", "SWITCHBOARD_ALERT_FAILURE_RATE": "0.2",
                                  "SWITCHBOARD_ALERT_MIN_ATTEMPTS": "3", "SWITCHBOARD_ALERT_BACKLOG": "10",
                                  "SWITCHBOARD_ALERT_WINDOW": "30", "SWITCHBOARD_ALERT_COOLDOWN": "0"})
    again = Settings.from_env(settings.as_env())
    assert again.analytics == settings.analytics and again.analytics.alert_interval_s == 5.0
    assert AlertPolicy.from_settings(settings.analytics) == AlertPolicy(window_s=30, failure_rate=0.2, min_attempts=3,
                                                              backlog=10, cooldown_s=0)
    with pytest.raises(SettingsError, match="ALERT_FAILURE_RATE"):
        Settings.from_env({"SWITCHBOARD_ALERT_FAILURE_RATE": "1.5"})


async def test_the_evaluator_runs_every_interval_until_stopped(ledger, published) -> None:
    await ledger.record_batch([attempt(f"bad{n}", 1, "failed", endpoint="ep_bad",
                                       at=datetime.now(UTC) - timedelta(seconds=10)) for n in range(20)])
    stopping = asyncio.Event()
    task = asyncio.create_task(AlertEvaluator(ledger.pool, POLICY, published).run(0.05, stopping))
    for _ in range(100):
        if published:
            break
        await asyncio.sleep(0.05)
    stopping.set()
    await asyncio.wait_for(task, 5)
    assert published.of(FAILURE_RATE) == [("firing", "ep_bad")]
