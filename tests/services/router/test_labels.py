"""People's corrections of the AI labels on real PostgreSQL: what a correction sets, the accuracy counted against
them per provider and model, the examples lent to the AI (same event type first), and the paged listing AIService
trains from."""

from __future__ import annotations

from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest

from services.router.event_store import EventStore
from services.router.labels import LabelStore, corrected_labels
from switchboard.database import apply_migrations
from switchboard.errors import InvalidRequest
from switchboard.events import Event

MIGRATIONS = Path(__file__).parents[3] / "services/router/migrations"
CATEGORIES = ("billing", "code", "support", "sales", "alert", "other", "shipping")
NOW = datetime.now(UTC)


def ai(category: str, provider: str = "local", model: str = "local-linear-2") -> dict:
    return {"category": category, "priority": "normal", "sentiment": "neutral", "confidence": 0.9,
            "provider": provider, "model": model}


def event(n: int, type_: str = "message.received", tenant: str = "t1", text: str = "", days_ago: float = 0) -> Event:
    return Event(id=f"evt_{n:032x}", tenant_id=tenant, source_id="s1", type=type_,
                 received_at=(NOW - timedelta(days=days_ago, minutes=100 - n)).timestamp(),
                 payload={"text": text or f"message {n}"}, source_type="slack")


@pytest.fixture
async def stores(pool):
    await apply_migrations(pool, "router", MIGRATIONS)
    return EventStore(pool), LabelStore(pool, examples_ttl_s=0)


def test_a_correction_confirms_the_labels_it_leaves_out() -> None:
    given = {"category": "shipping", "priority": None, "sentiment": None}
    assert corrected_labels(given, ai("support"), CATEGORIES) == \
        {"category": "shipping", "priority": "normal", "sentiment": "neutral"}
    assert corrected_labels({"priority": "P1"}, ai("support"), CATEGORIES, ("P1", "P2")) == \
        {"category": "support", "priority": "P1", "sentiment": "neutral"}
    assert corrected_labels({"category": "other"}, None, CATEGORIES) == \
        {"category": "other", "priority": None, "sentiment": None}


@pytest.mark.parametrize("given,ai_labels,message", [
    ({}, ai("billing"), "give the event's category, priority or sentiment"),
    ({"category": "refunds"}, ai("billing"), "category 'refunds' is not one of the tenant's"),
    ({"priority": "urgent"}, ai("billing"), "priority 'urgent' is not one of the tenant's: P1, P2"),
    ({"sentiment": "furious"}, ai("billing"), "sentiment 'furious'"),
    ({"priority": "P1"}, None, "the event was not classified: give its category"),
])
def test_a_bad_correction_is_refused_naming_the_field(given: dict, ai_labels: dict | None, message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        corrected_labels(given, ai_labels, CATEGORIES, ("P1", "P2"))
    assert message in str(refused.value)


async def test_accuracy_counts_the_corrected_events_per_provider_and_model(stores) -> None:
    events, labels = stores
    decisions = [ai("billing"), ai("support"), ai("alert", "anthropic", "claude-test"), ai("other"), None]
    for n, decision in enumerate(decisions, 1):
        await events.store(event(n), {"routes": [], "ai": decision})
    await events.store(event(6, days_ago=40), {"routes": [], "ai": ai("billing")})
    await events.store(event(7, tenant="t2"), {"routes": [], "ai": ai("billing")})
    corrections = [(1, "billing"), (2, "shipping"), (3, "alert"), (5, "other"), (6, "code"), (7, "code")]
    for n, category in corrections:
        stored = await events.get("t2" if n == 7 else "t1", f"evt_{n:032x}")
        fixed = corrected_labels({"category": category}, (stored.routing or {}).get("ai"), CATEGORIES)
        await labels.label(stored, fixed, "key_1")
    # A new correction replaces the last: event 1 was support after all, its priority high.
    stored = await events.get("t1", f"evt_{1:032x}")
    await labels.label(stored, corrected_labels({"category": "support", "priority": "high"}, ai("billing"),
                                                CATEGORIES), "key_2")

    rows = {(a.provider, a.model): a for a in await labels.accuracy("t1", 30)}
    # Event 4 nobody corrected, event 5 nobody classified, event 6 is older than 30 days, event 7 is t2's.
    assert set(rows) == {("anthropic", "claude-test"), ("local", "local-linear-2")}
    local = rows["local", "local-linear-2"]
    assert (local.corrected, local.category_right, local.priority_right, local.sentiment_right) == (2, 0, 1, 2)
    assert rows["anthropic", "claude-test"].category_right == 1
    assert len(await labels.accuracy("t1", 60)) == 2 and (await labels.accuracy("t1", 60))[1].corrected == 3

    kept = await labels.get("t1", f"evt_{1:032x}")
    assert kept is not None and (kept.category, kept.priority, kept.labelled_by) == ("support", "high", "key_2")
    assert kept.ai == {"category": "billing", "priority": "normal", "sentiment": "neutral", "provider": "local",
                       "model": "local-linear-2"}
    assert await labels.get("t2", f"evt_{1:032x}") is None


async def test_examples_put_the_same_event_type_first_and_the_listing_pages(stores) -> None:
    events, labels = stores
    for n, type_ in enumerate(["order.created", "message.received", "order.created", "message.received"], 1):
        await events.store(event(n, type_, text=f"text {n} " + "x" * (400 if n == 4 else 0)), {"ai": ai("support")})
        stored = await events.get("t1", f"evt_{n:032x}")
        await labels.label(stored, corrected_labels({"category": "shipping"}, ai("support"), CATEGORIES), "k")

    examples = await labels.examples("t1", "order.created")
    assert [e.text[:6] for e in examples] == ["text 3", "text 1", "text 4", "text 2"]
    assert examples[0].source_type == "slack" and examples[0].category == "shipping"
    assert len(examples[2].text) == 301 and examples[2].text.endswith("…")
    assert len(await labels.examples("t1", "order.created", count=2)) == 2
    assert await labels.examples("t2", "order.created") == []

    first, cursor = await labels.page("t1", None, 3)
    rest, last = await labels.page("t1", cursor, 3)
    assert [c.event_id for c in first + rest] == [f"evt_{n:032x}" for n in (4, 3, 2, 1)] and last is None
    assert first[0].payload["text"].startswith("text 4") and first[0].priority == "normal"
