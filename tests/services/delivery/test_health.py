"""EndpointHealth over a real PostgreSQL: an endpoint failing past its limit is disabled once, by the
first attempt to find it so; the attempts in flight beside it keep the first reason and log nothing
more; an endpoint its owner enabled again is disabled again when it fails on."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from plugins.destinations.spec import SendResult
from services.delivery.health import EndpointHealth
from switchboard.circuit import CircuitBreakers
from switchboard.database import apply_migrations
from tests.services.delivery.stores import delivery_stores

MIGRATIONS = Path(__file__).parents[3] / "services/delivery/migrations"
FAILED = SendResult(ok=False, status_code=500, error="receiver answered 500")


async def test_a_failing_endpoint_is_disabled_once_and_again_after_it_is_enabled(pool, caplog) -> None:
    await apply_migrations(pool, "delivery", MIGRATIONS)
    endpoints = delivery_stores(pool).endpoints
    created = await endpoints.create("ten_health", "https://example.com/hook", "", "webhook", "s" * 32)
    health = EndpointHealth(endpoints, CircuitBreakers(threshold=1000, cooldown_s=1.0))
    await health.observe(created, FAILED, auto_disable_after_s=None)  # the streak begins
    await asyncio.sleep(0.05)
    caplog.set_level(logging.WARNING, logger="services.delivery.health")
    # Eight attempts in flight, each holding the endpoint as it was when it began (enabled).
    await asyncio.gather(*(health.observe(created, FAILED, auto_disable_after_s=0.01) for _ in range(8)))
    disabled = await endpoints.get("ten_health", created.id)
    assert disabled.disabled_at is not None and disabled.disabled_reason
    assert [r.message for r in caplog.records] == ["endpoint auto-disabled"]
    first = (disabled.disabled_at, disabled.disabled_reason)
    await health.observe(created, SendResult(ok=False, error="later"), auto_disable_after_s=0.01)
    again = await endpoints.get("ten_health", created.id)
    assert (again.disabled_at, again.disabled_reason) == first

    # Its owner enables it again; it fails on (the streak was reset, so a new one begins and runs out).
    enabled = await endpoints.set_disabled("ten_health", created.id, None)
    assert enabled.disabled_at is None
    await health.observe(enabled, FAILED, auto_disable_after_s=None)
    await asyncio.sleep(0.05)
    await health.observe(enabled, FAILED, auto_disable_after_s=0.01)
    assert (await endpoints.get("ten_health", created.id)).disabled_at is not None
    assert len(caplog.records) == 2


async def test_a_receiver_that_asks_is_disabled_with_its_reason(pool) -> None:
    reason = "the receiver answered 410 Gone"
    await apply_migrations(pool, "delivery", MIGRATIONS)
    endpoints = delivery_stores(pool).endpoints
    created = await endpoints.create("ten_gone", "https://example.com/hook", "", "webhook", "s" * 32)
    health = EndpointHealth(endpoints, CircuitBreakers(threshold=5, cooldown_s=1.0))
    await health.observe(created, SendResult(ok=False, status_code=410, retryable=False, disable_endpoint=reason),
                         auto_disable_after_s=None)
    assert (await endpoints.get("ten_gone", created.id)).disabled_reason == reason
