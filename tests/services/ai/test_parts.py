"""The AI service's parts that need no provider: answers, prompts, the gate, the cache, conversation turns."""

import asyncio
from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest

from plugins.ai.spec import AIRequest, AIResponse, EventInput, Turn
from services.ai.answers import (
    InvalidAnswer,
    check_extraction_schema,
    parse_classification,
    parse_extraction,
    parse_reply,
)
from services.ai.engine import ResponseCache
from switchboard.event_text import event_text
from services.ai.gate import ProviderGate, ProviderLimits
from services.ai.prompts import BUILTIN, PromptTemplate, check_template, render
from services.ai.store import AIStore
from switchboard.database import apply_migrations
from switchboard.errors import InvalidRequest
from tests.sealing import BOX

MIGRATIONS = Path(__file__).parents[3] / "services/ai/migrations"
CATEGORIES = ("billing", "support", "other")


def test_a_classification_must_use_the_tenants_categories_and_known_labels() -> None:
    good = '{"category": "billing", "priority": "high", "sentiment": "negative", "confidence": 0.8, "summary": "x"}'
    assert parse_classification(good, CATEGORIES).category == "billing"
    assert parse_classification(f"```json\n{good}\n```", CATEGORIES).priority == "high"
    for bad in ("not json", good.replace("billing", "sales"), good.replace("0.8", "1.5"),
                good.replace('"high"', '"meh"'), '{"category": "billing"}'):
        with pytest.raises(InvalidAnswer):
            parse_classification(bad, CATEGORIES)


def test_extraction_schemas_are_checked_and_answers_validated_against_them() -> None:
    schema = check_extraction_schema({"type": "object", "properties": {"email": {"type": "string"}},
                                      "required": ["email"]})
    assert parse_extraction('{"email": "a@b.c"}', schema) == {"email": "a@b.c"}
    with pytest.raises(InvalidAnswer, match="email"):
        parse_extraction('{"email": 5}', schema)
    bad: object
    for bad in ({"type": "array"}, {"type": "object"}, {"type": "object", "properties": {"a": {"type": "nope"}}}, []):
        with pytest.raises(InvalidRequest):
            check_extraction_schema(bad)


def test_replies_are_non_empty_and_bounded() -> None:
    assert parse_reply("  Thanks, we are on it.  ") == "Thanks, we are on it."
    for bad in ("", "   ", "x" * 2001):
        with pytest.raises(InvalidAnswer):
            parse_reply(bad)


def test_templates_take_only_known_placeholders_and_render_without_code() -> None:
    check_template("You triage.", "Type: $event_type, ${text}; costs $$5")
    for bad in ("Hello $secret", "Broken ${", ""):
        with pytest.raises(InvalidRequest):
            check_template("ok", bad)
    event = EventInput("t1", "stripe", "invoice.paid", {"a": "{__import__('os')}" * 2000}, "paid")
    system, prompt = render(BUILTIN["classify"], event, categories=CATEGORIES)
    assert prompt.startswith("Event type: invoice.paid\n") and "…\n\nThe categories" in prompt  # the payload, cut
    assert "- billing: money owed" in prompt and "- support: a customer" in prompt
    assert render(PromptTemplate("classify", 1, "s", "$categories"), event, categories=CATEGORIES)[1] == \
        "billing, support, other"  # a tenant's template: the tenant's order
    reply = render(BUILTIN["reply"], event, turns=(Turn("customer", "Help!"), Turn("agent", "On it.")))[1]
    assert "customer: Help!\nagent: On it." in reply


def test_event_text_finds_what_people_wrote() -> None:
    payload = {"type": "conversation.user.replied", "data": {"item": {"conversation_parts": {"conversation_parts": [
        {"body": "<p>My invoice is wrong</p>"}]}, "title": "Billing question"}}}
    assert event_text(payload) == "Billing question | <p>My invoice is wrong</p>"
    assert event_text({"n": 1}) == "" and len(event_text({"text": "x" * 10_000})) == 4000


async def test_urgent_requests_go_first_when_a_provider_is_over_its_limit() -> None:
    now = [0.0]
    gate = ProviderGate({"p": ProviderLimits(requests_per_minute=60, tokens_per_minute=1e9)},
                        clock=lambda: now[0], poll_s=0.001)
    for _ in range(60):  # spend the minute's budget
        assert await gate.admit("p", 10, "normal", 0)
    order: list[str] = []

    async def ask(lane: str) -> None:
        if await gate.admit("p", 10, lane, 10):
            order.append(lane)

    waiting = [asyncio.create_task(ask("normal")), asyncio.create_task(ask("urgent"))]
    await asyncio.sleep(0.01)
    now[0] += 1.0  # one request's worth refills
    await asyncio.sleep(0.01)
    assert order == ["urgent"]
    now[0] += 1.0
    await asyncio.gather(*waiting)
    assert order == ["urgent", "normal"]
    assert not await gate.admit("p", 10, "normal", 0)  # over the limit and not willing to wait
    assert await gate.admit("unlimited", 10**6, "normal", 0)


async def test_the_token_budget_counts_tokens_too() -> None:
    gate = ProviderGate({"p": ProviderLimits(requests_per_minute=1000, tokens_per_minute=1000)}, clock=lambda: 0.0)
    assert await gate.admit("p", 800, "normal", 0)
    assert not await gate.admit("p", 300, "normal", 0)
    assert await gate.admit("p", 200, "normal", 0)


def test_the_cache_answers_the_same_question_within_its_ttl() -> None:
    now = [0.0]
    cache = ResponseCache(ttl_s=60, max_entries=2, clock=lambda: now[0])
    request = AIRequest("classify", "sys", "prompt", {"type": "object"})
    chain = ("anthropic", "local")
    key = ResponseCache.key("t1", "anthropic", chain, 0, request)
    assert key != ResponseCache.key("t1", "openai", chain, 0, request)
    other = AIRequest("classify", "sys", "other", {"type": "object"})
    assert key != ResponseCache.key("t1", "anthropic", chain, 0, other)
    assert key != ResponseCache.key("t2", "anthropic", chain, 0, request)
    assert key != ResponseCache.key("t1", "anthropic", chain, 1, request)
    assert key != ResponseCache.key("t1", "anthropic", ("anthropic", "openai", "local"), 0, request)
    cache.put(key, AIResponse("{}", "m"))
    cached = cache.get(key)
    assert cached is not None and cached.text == "{}"
    now[0] += 61
    assert cache.get(key) is None
    assert (cache.hits, cache.misses) == (1, 1)


async def test_conversation_context_keeps_recent_turns_within_size_and_age(pool) -> None:
    await apply_migrations(pool, "ai", MIGRATIONS)
    store = AIStore(pool, BOX)
    for n in range(25):
        await store.add_turn("t1", "conv-1", "customer" if n % 2 == 0 else "agent", f"turn {n}")
    await store.add_turn("t1", "conv-2", "customer", "elsewhere")
    await store.add_turn("t2", "conv-1", "customer", "another tenant")
    turns = await store.turns("t1", "conv-1")
    assert [t.text for t in turns] == [f"turn {n}" for n in range(5, 25)]  # the last 20, oldest first
    later = datetime.now(UTC) + timedelta(days=8)
    assert await store.turns("t1", "conv-1", now=later) == ()
    await store.add_turn("t1", "conv-3", "customer", "a" * 4000)
    for _ in range(4):
        await store.add_turn("t1", "conv-3", "agent", "b" * 4000)
    assert sum(len(t.text) for t in await store.turns("t1", "conv-3")) <= 12_000


def test_provider_limits_come_from_settings_and_bad_values_stop_the_start() -> None:
    from plugins.ai.spec import ProviderSettings
    from services.ai.app import provider_limits
    from switchboard.settings import SettingsError

    env = {"SWITCHBOARD_AI_ANTHROPIC_REQUESTS_PER_MINUTE": "50", "SWITCHBOARD_AI_OPENAI_TOKENS_PER_MINUTE": "9000"}
    limits = provider_limits(["anthropic", "openai", "local"], ProviderSettings(env))
    assert limits["anthropic"].requests_per_minute == 50 and limits["openai"].tokens_per_minute == 9000
    assert "local" not in limits
    # Two AI processes: each takes half of the platform's budget.
    halves = provider_limits(["anthropic", "openai"], ProviderSettings(env), processes=2)
    assert halves["anthropic"].requests_per_minute == 25 and halves["openai"].tokens_per_minute == 4500
    for bad in ("lots", "-5"):
        with pytest.raises(SettingsError):
            provider_limits(["anthropic"], ProviderSettings({"SWITCHBOARD_AI_ANTHROPIC_REQUESTS_PER_MINUTE": bad}))
