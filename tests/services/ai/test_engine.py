"""The AI engine against real PostgreSQL and the official Anthropic and OpenAI SDKs talking to
loopback servers that speak their APIs: fallbacks, retries of invalid answers, the cache, the
circuit breaker, rate limits, usage, and tenants' own provider keys."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from plugins.ai.spec import EventInput
from plugins.manager import load_registry
from services.ai.engine import AIEngine, ResponseCache
from services.ai.gate import ProviderGate, ProviderLimits
from services.ai.store import AIStore
from switchboard.circuit import CircuitBreakers
from switchboard.database import apply_migrations
from switchboard.secretbox import SecretBox
from tests.ai_servers import (FakeAIServer, Reply, anthropic_answer, anthropic_error, anthropic_message,
                              openai_completion, openai_error)
from tests.sealing import BOX

MIGRATIONS = Path(__file__).parents[3] / "services/ai/migrations"
EVENT = EventInput("t1", "stripe", "invoice.payment_failed", {"data": {"object": {"amount_due": 4900}}},
                   "Payment failed for invoice in_1")
LABELS = {"category": "billing", "priority": "high", "sentiment": "negative", "confidence": 0.9,
          "summary": "A customer's invoice payment failed"}


def tool_answer(labels: dict) -> Reply:
    return anthropic_answer(labels, input_tokens=120, output_tokens=30)


def json_answer(labels: dict) -> Reply:
    return Reply(body=openai_completion(json.dumps(labels), prompt_tokens=100, completion_tokens=20))


@pytest.fixture
async def servers():
    with FakeAIServer() as anthropic, FakeAIServer() as openai:
        yield anthropic, openai


@pytest.fixture
async def make_engine(pool, servers):
    await apply_migrations(pool, "ai", MIGRATIONS)
    anthropic, openai = servers
    store = AIStore(pool, BOX)

    def make(keys: bool = True, limits: dict | None = None, max_wait_s: float = 0.0, cache_ttl_s: float = 60):
        env = {"SWITCHBOARD_AI_ANTHROPIC_BASE_URL": anthropic.url, "SWITCHBOARD_AI_ANTHROPIC_TIMEOUT": "1",
               "SWITCHBOARD_AI_OPENAI_BASE_URL": f"{openai.url}/v1", "SWITCHBOARD_AI_OPENAI_TIMEOUT": "1",
               "SWITCHBOARD_AI_OPENAI_API_KEY": "sk-test"}
        if keys:
            env["SWITCHBOARD_AI_ANTHROPIC_API_KEY"] = "sk-ant-test"
        return AIEngine(load_registry(env=env), store, ("anthropic", "openai"), ProviderGate(limits or {}),
                        CircuitBreakers(threshold=2, cooldown_s=60), ResponseCache(cache_ttl_s),
                        timeout_s=5, max_wait_s=max_wait_s)

    return make, store


async def test_the_first_provider_answers_and_its_usage_is_recorded(make_engine, servers) -> None:
    make, store = make_engine
    anthropic, _ = servers
    anthropic.reply(tool_answer(LABELS))
    answer = await make().classify(EVENT, lane="normal")
    assert answer.provider == "anthropic" and answer.value.category == "billing" and answer.value.confidence == 0.9
    assert (answer.input_tokens, answer.output_tokens, answer.passed_over) == (120, 30, ())
    sent = anthropic.received[0].json
    asked = sent["messages"][0]["content"]
    assert asked.startswith("Event type: invoice.payment_failed\n") and "\n- alert: " in asked \
        and asked.index("- alert: ") < asked.index("- billing: ") < asked.index("- support: ")
    assert sent["tool_choice"] == {"type": "tool", "name": "answer"}
    [usage] = await store.usage("t1", since=__import__("datetime").date.today())
    assert (usage.provider, usage.requests, usage.input_tokens, usage.output_tokens) == ("anthropic", 1, 120, 30)
    assert usage.cost_usd > 0


@pytest.mark.parametrize("failure,reason", [
    (Reply(delay_s=2, body=anthropic_message([])), "no answer within 1 s"),
    (Reply(status=500, body=anthropic_error("api_error", "Internal")), "500"),
    (Reply(status=529, body=anthropic_error("overloaded_error", "Overloaded")), "529"),
    (Reply(status=429, headers={"retry-after": "30"}, body=anthropic_error("rate_limit_error", "Slow down")), "429"),
    (Reply(status=401, body=anthropic_error("authentication_error", "invalid x-api-key")), "401"),
])
async def test_a_failing_provider_falls_back_to_the_next(make_engine, servers, failure, reason) -> None:
    make, store = make_engine
    anthropic, openai = servers
    anthropic.reply(failure)
    openai.reply(json_answer(LABELS))
    answer = await make().classify(EVENT, lane="normal")
    assert answer.provider == "openai" and answer.value.priority == "high"
    [passed] = answer.passed_over
    assert passed.startswith("anthropic: ") and reason in passed
    assert "sk-ant-test" not in passed


async def test_an_invalid_answer_is_asked_for_once_more_then_the_next_provider_is_used(make_engine, servers) -> None:
    make, _ = make_engine
    anthropic, openai = servers
    wrong = {**LABELS, "category": "groceries"}
    anthropic.reply(tool_answer(wrong), tool_answer(LABELS))
    answer = await make().classify(EVENT, lane="normal")
    assert answer.provider == "anthropic" and len(anthropic.received) == 2  # the second try was valid

    anthropic.reply(tool_answer(wrong), tool_answer({**LABELS, "confidence": 7}))
    openai.reply(Reply(body=openai_completion("Sure! Here is the JSON you wanted.")), json_answer(LABELS))
    other = {**EVENT.__dict__, "event_type": "invoice.voided"}
    answer = await make().classify(EventInput(**other), lane="normal")
    assert answer.provider == "openai" and len(anthropic.received) == 4 and len(openai.received) == 2
    assert "invalid answer" in answer.passed_over[0]


async def test_with_every_provider_down_or_unconfigured_local_answers(make_engine, servers) -> None:
    make, _ = make_engine
    _, openai = servers
    openai.reply(Reply(status=503, body=openai_error("down", "server_error")))
    answer = await make(keys=False).classify(EVENT, lane="normal")
    assert answer.provider == "local" and answer.value.category == "billing"
    assert answer.passed_over[0] == "anthropic: not configured" and answer.passed_over[1].startswith("openai: ")


async def test_the_same_question_is_answered_from_the_cache(make_engine, servers) -> None:
    make, store = make_engine
    anthropic, _ = servers
    anthropic.reply(tool_answer(LABELS))
    engine = make()
    first = await engine.classify(EVENT, lane="normal")
    second = await engine.classify(EVENT, lane="normal")
    assert not first.cached and second.cached and second.value == first.value
    assert len(anthropic.received) == 1 and (engine.cache.hits, engine.cache.misses) == (1, 1)


async def test_the_circuit_opens_after_repeated_failures_and_the_provider_is_left_alone(make_engine, servers) -> None:
    make, _ = make_engine
    anthropic, openai = servers
    engine = make(cache_ttl_s=0)
    for n in range(3):
        if n < 2:
            anthropic.reply(Reply(status=500, body=anthropic_error("api_error", "Internal")))
        openai.reply(json_answer(LABELS))
        answer = await engine.classify(EventInput(**{**EVENT.__dict__, "text": f"try {n}"}), lane="normal")
        assert answer.provider == "openai"
    assert len(anthropic.received) == 2
    assert answer.passed_over == ("anthropic: circuit open after repeated failures",)


async def test_over_its_rate_limit_a_provider_is_passed_over_rather_than_waited_for(make_engine, servers) -> None:
    make, _ = make_engine
    anthropic, openai = servers
    engine = make(limits={"anthropic": ProviderLimits(requests_per_minute=1, tokens_per_minute=100_000)},
                  cache_ttl_s=0)
    anthropic.reply(tool_answer(LABELS))
    openai.reply(json_answer(LABELS))
    assert (await engine.classify(EVENT, lane="normal")).provider == "anthropic"
    second = await engine.classify(EVENT, lane="urgent")
    assert second.provider == "openai" and second.passed_over == ("anthropic: over its rate limit",)


async def test_a_tenants_chain_and_categories_are_its_own(make_engine, servers) -> None:
    make, store = make_engine
    anthropic, openai = servers
    await store.save_settings("t1", ("openai",), ("payments", "tickets"))
    openai.reply(json_answer({**LABELS, "category": "payments"}))
    answer = await make().classify(EVENT, lane="normal")
    assert answer.provider == "openai" and answer.value.category == "payments"
    assert "\n- payments\n- tickets\n" in openai.received[0].json["messages"][1]["content"]
    assert anthropic.received == []


async def test_extraction_is_valid_against_the_tenants_schema(make_engine, servers) -> None:
    make, _ = make_engine
    anthropic, _ = servers
    schema = {"type": "object", "properties": {"invoice": {"type": "string"}, "amount": {"type": "integer"}},
              "required": ["invoice", "amount"]}
    anthropic.reply(tool_answer({"invoice": "in_1", "amount": "lots"}),
                    tool_answer({"invoice": "in_1", "amount": 4900}))
    answer = await make().extract(EVENT, schema)
    assert answer.value == {"invoice": "in_1", "amount": 4900} and len(anthropic.received) == 2
    assert anthropic.received[0].json["tools"][0]["input_schema"] == schema


async def test_a_reply_is_drafted_from_the_conversation_and_joins_it(make_engine, servers) -> None:
    make, store = make_engine
    anthropic, _ = servers
    await store.add_turn("t1", "conv_9", "customer", "Hi, I was charged twice.")
    await store.add_turn("t1", "conv_9", "agent", "Sorry about that! Which invoice?")
    anthropic.reply(Reply(body=anthropic_message([{"type": "text", "text": "Thanks! A teammate will refund it."}])))
    event = EventInput("t1", "intercom", "conversation.user.replied", {}, "It is invoice in_1.")
    answer = await make().draft_reply(event, "conv_9")
    assert answer.value == "Thanks! A teammate will refund it."
    prompt = anthropic.received[0].json["messages"][0]["content"]
    assert ("customer: Hi, I was charged twice.\nagent: Sorry about that! Which invoice?\n"
            "customer: It is invoice in_1.") in prompt
    assert [t.role for t in await store.turns("t1", "conv_9")] == ["customer", "agent", "customer", "agent"]


async def test_a_half_open_circuit_that_answers_from_the_cache_still_lets_the_next_request_probe(
        make_engine, servers) -> None:
    make, _ = make_engine
    anthropic, openai = servers
    engine = make()
    now = [0.0]
    engine.circuits = CircuitBreakers(threshold=2, cooldown_s=60, clock=lambda: now[0])

    def asked(text: str) -> EventInput:
        return EventInput(**{**EVENT.__dict__, "text": text})

    anthropic.reply(tool_answer(LABELS))
    assert (await engine.classify(asked("cached"), lane="normal")).provider == "anthropic"
    for text in ("b", "c"):
        anthropic.reply(Reply(status=500, body=anthropic_error("api_error", "Internal")))
        openai.reply(json_answer(LABELS))
        assert (await engine.classify(asked(text), lane="normal")).provider == "openai"
    now[0] += 61  # half-open
    assert (await engine.classify(asked("cached"), lane="normal")).cached
    anthropic.reply(tool_answer(LABELS))
    probe = await engine.classify(asked("d"), lane="normal")
    assert probe.provider == "anthropic" and engine.circuits.circuit("anthropic").state == "closed"


async def test_the_cache_is_per_tenant_so_no_tenant_learns_what_another_asked(make_engine, servers) -> None:
    make, _ = make_engine
    anthropic, _ = servers
    engine = make()
    anthropic.reply(tool_answer(LABELS), tool_answer({**LABELS, "category": "support"}))
    first = await engine.classify(EVENT, lane="normal")
    other = await engine.classify(EventInput(**{**EVENT.__dict__, "tenant_id": "t2"}), lane="normal")
    assert not first.cached and not other.cached and len(anthropic.received) == 2
    assert other.value.category == "support"
    again = await engine.classify(EVENT, lane="normal")
    assert again.cached and again.value.category == "billing"


async def test_a_new_prompt_version_or_provider_chain_is_not_answered_from_the_cache(make_engine, servers) -> None:
    make, store = make_engine
    anthropic, _ = servers
    engine = make()
    anthropic.reply(tool_answer(LABELS), tool_answer(LABELS), tool_answer(LABELS))
    assert not (await engine.classify(EVENT, lane="normal")).cached
    builtin = await store.prompt("t1", "classify")
    await store.save_prompt("t1", "classify", builtin.system, builtin.template)  # same text, a new version
    engine.store._forget("t1")
    assert not (await engine.classify(EVENT, lane="normal")).cached
    await store.save_settings("t1", ("anthropic", "local"), None)  # openai left out
    assert not (await engine.classify(EVENT, lane="normal")).cached
    assert len(anthropic.received) == 3


async def test_a_providers_retry_after_is_honoured_before_asking_it_again(make_engine, servers) -> None:
    make, _ = make_engine
    anthropic, openai = servers
    engine = make(cache_ttl_s=0)
    now = [1000.0]
    engine.circuits = CircuitBreakers(threshold=5, cooldown_s=60, clock=lambda: now[0])
    anthropic.reply(Reply(status=429, headers={"retry-after": "30"}, body=anthropic_error("rate_limit_error", "Slow")))
    openai.reply(json_answer(LABELS), json_answer(LABELS), json_answer(LABELS))
    assert (await engine.classify(EVENT, lane="normal")).provider == "openai"
    now[0] += 10  # within the 30 s the provider asked for: not asked, though its circuit is closed
    second = await engine.classify(EventInput(**{**EVENT.__dict__, "text": "b"}), lane="normal")
    assert second.provider == "openai" and len(anthropic.received) == 1
    assert second.passed_over[0].startswith("anthropic: asked to wait") and "Retry-After" in second.passed_over[0]
    now[0] += 21  # past it: asked again
    anthropic.reply(tool_answer(LABELS))
    assert (await engine.classify(EventInput(**{**EVENT.__dict__, "text": "c"}), lane="normal")).provider == "anthropic"
    assert len(anthropic.received) == 2


# -- a tenant's own provider keys ----------------------------------------------------------------

async def test_a_tenants_own_key_answers_its_requests_and_no_other_tenants(make_engine, servers, pool) -> None:
    make, store = make_engine
    anthropic, _ = servers
    own = "sk-ant-tenant-one-" + "x" * 16
    await store.save_settings("t1", None, None, {"anthropic": own})
    anthropic.reply(tool_answer(LABELS), tool_answer(LABELS))
    engine = make()
    assert (await engine.classify(EVENT, lane="normal")).provider == "anthropic"
    assert (await engine.classify(replace(EVENT, tenant_id="t2"), lane="normal")).provider == "anthropic"
    # The SDK sends its key as a bearer token.
    assert [r.headers["authorization"] for r in anthropic.received] == [f"Bearer {own}", "Bearer sk-ant-test"]
    async with pool.connection() as conn:
        stored = (await (await conn.execute(
            "SELECT provider_keys::text AS keys FROM ai.tenant_settings WHERE tenant_id = 't1'")).fetchone())["keys"]
    assert own not in stored and "sb1:" in stored  # sealed at rest

    await store.save_settings("t1", None, None, {"anthropic": None})  # removed: the deployment's key again
    anthropic.reply(tool_answer(LABELS))
    await engine.classify(replace(EVENT, payload={"n": 2}), lane="normal")
    assert anthropic.received[-1].headers["authorization"] == "Bearer sk-ant-test"


async def test_a_tenants_key_makes_a_provider_the_deployment_has_no_key_for_answer_it(make_engine, servers) -> None:
    make, store = make_engine
    anthropic, openai = servers
    await store.save_settings("t1", None, None, {"anthropic": "sk-ant-tenant-one-key"})
    anthropic.reply(tool_answer(LABELS))
    openai.reply(json_answer(LABELS))
    engine = make(keys=False)
    assert (await engine.classify(EVENT, lane="normal")).provider == "anthropic"
    other = await engine.classify(replace(EVENT, tenant_id="t2"), lane="normal")
    assert other.provider == "openai" and other.passed_over == ("anthropic: not configured",)


async def test_a_bad_tenant_key_opens_that_tenants_circuit_only(make_engine, servers) -> None:
    make, store = make_engine
    anthropic, openai = servers
    await store.save_settings("t1", None, None, {"anthropic": "sk-ant-revoked-key"})
    refused = Reply(status=401, body=anthropic_error("authentication_error", "invalid x-api-key"))
    anthropic.reply(refused, refused)
    openai.reply(json_answer(LABELS), json_answer(LABELS), json_answer(LABELS))
    engine = make(cache_ttl_s=0)
    for n in range(3):  # threshold 2: the third is not sent to Anthropic with that key
        answer = await engine.classify(replace(EVENT, payload={"n": n}), lane="normal")
        assert answer.provider == "openai"
    assert answer.passed_over == ("anthropic: circuit open after repeated failures",)
    assert len(anthropic.received) == 2
    anthropic.reply(tool_answer(LABELS))  # another tenant, on the deployment's key, is not held back
    assert (await engine.classify(replace(EVENT, tenant_id="t2"), lane="normal")).provider == "anthropic"


async def test_provider_keys_are_sealed_again_under_a_new_master_key(pool) -> None:
    await apply_migrations(pool, "ai", MIGRATIONS)
    old = AIStore(pool, SecretBox("old-master-key-" + "o" * 32))
    await old.save_settings("t9", None, None, {"openai": "sk-openai-tenant-nine"})
    new_box = SecretBox("new-master-key-" + "n" * 32, ["old-master-key-" + "o" * 32])
    new = AIStore(pool, new_box)
    assert (await new.settings("t9")).provider_keys == {"openai": "sk-openai-tenant-nine"}  # opens with the old
    assert await new.reseal() == 1 and await new.reseal() == 0
    async with pool.connection() as conn:
        stored = (await (await conn.execute(
            "SELECT provider_keys->>'openai' AS key FROM ai.tenant_settings WHERE tenant_id = 't9'")).fetchone())["key"]
    assert new_box.is_current(stored)
    assert (await AIStore(pool, SecretBox("new-master-key-" + "n" * 32)).settings("t9")).provider_keys == \
        {"openai": "sk-openai-tenant-nine"}
