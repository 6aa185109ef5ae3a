from __future__ import annotations

from datetime import datetime, UTC
from pathlib import Path

import pytest

from services.analytics.ledger import AttemptLedger
from switchboard.database import apply_migrations
from switchboard.events import AttemptRecord, DeliveryNotice, RoutingOutcome

MIGRATIONS = Path(__file__).parents[3] / "services/analytics/migrations"
# A fixed "now" for the readers: 2026-03-10 12:30 UTC.
NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)


def attempt(delivery: str, number: int, outcome: str = "succeeded", *, at: datetime, latency_ms: float = 10.0,
            tenant: str = "t1", endpoint: str = "ep_a", event_type: str = "order.created", source: str | None = "src_a",
            category: str | None = None, priority: str | None = None, error: str | None = None,
            status_code: int | None = 200) -> AttemptRecord:
    """An attempt of delivery ``<delivery>:<endpoint>`` (``delivery`` is the event id)."""
    return AttemptRecord(delivery_id=f"{delivery}:{endpoint}", number=number, tenant_id=tenant, endpoint_id=endpoint,
                         event_type=event_type, outcome=outcome, status_code=status_code, latency_ms=latency_ms,
                         at=at.timestamp(), source_id=source, category=category, priority=priority, error=error)


@pytest.fixture
async def ledger(pool) -> AttemptLedger:
    await apply_migrations(pool, "analytics", MIGRATIONS)
    return AttemptLedger(pool)


def routed(event: str, *endpoints: str, at: datetime, outcome: str | None = None, tenant: str = "t1",
           event_type: str = "order.created", source: str = "src_a", category: str | None = None,
           priority: str | None = None) -> RoutingOutcome:
    """What the router reports for event ``event``: routed to ``endpoints`` (unrouted when none)."""
    return RoutingOutcome(event_id=event, tenant_id=tenant, source_id=source, event_type=event_type,
                          received_at=at.timestamp(), routed_at=at.timestamp(),
                          outcome=outcome or ("routed" if endpoints else "unrouted"), endpoint_ids=endpoints,
                          category=category, priority=priority)


def notice(delivery: str, state: str, *, at: datetime, tenant: str = "t1", endpoint: str = "ep_a",
           event_type: str = "order.created", source: str | None = "src_a",
           category: str | None = None, priority: str | None = None) -> DeliveryNotice:
    """The delivery service's notice about delivery ``<delivery>:<endpoint>`` (``delivery`` is the event id)."""
    return DeliveryNotice(delivery_id=f"{delivery}:{endpoint}", tenant_id=tenant, endpoint_id=endpoint,
                          event_type=event_type, state=state, at=at.timestamp(), source_id=source, category=category,
                          priority=priority)
