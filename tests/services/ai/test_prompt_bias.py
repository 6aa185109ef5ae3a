"""The built-in classify prompt does not bias the answer: the event comes first, the categories after it.

A weak model latched onto the first category it read, and the first revision of the prompt opened the user
message with the category list. Here a keyword-greedy stand-in (tests/ai_servers.py), asked through the
official Anthropic and OpenAI SDKs, answers with the category of the first category word in the user
message: with the built-in prompt that is the event's own words; with the old template, saved as a tenant's
prompt (a tenant's saved prompt is used as it is), it is the list's first category, whatever the event.
"""

from pathlib import Path

import pytest

from plugins.ai.spec import EventInput
from plugins.manager import load_registry
from services.ai.engine import AIEngine, ResponseCache
from services.ai.gate import ProviderGate
from services.ai.prompts import BUILTIN, category_guide, render
from services.ai.store import AIStore
from switchboard.circuit import CircuitBreakers
from switchboard.database import apply_migrations
from tests.ai_servers import FakeAIServer, keyword_greedy, user_message
from tests.sealing import BOX

MIGRATIONS = Path(__file__).parents[3] / "services/ai/migrations"

# The built-in classify prompt before revision 2, as it was.
OLD_SYSTEM = (
    "You triage webhook events for an operations team. Answer only through the JSON schema given: "
    "the category that fits best, the priority (urgent only for outages, security incidents or "
    "blocked customers), the sender's sentiment, your confidence from 0 to 1, and a one-line summary "
    "a person can act on. Do not invent facts that are not in the event."
)
OLD_TEMPLATE = ("Categories: $categories\n\nSource: $source_type\nEvent type: $event_type\n"
                "Text: $text\nPayload (JSON): $payload")

# What names each category, to the greedy model: its name and a word or two.
WORDS = {
    "billing": ("billing", "invoice"),
    "code": ("code", "commit"),
    "support": ("support", "help"),
    "sales": ("sales", "quote"),
    "alert": ("alert", "failure", "outage"),
    "other": ("other", "thanks"),
}
# Events whose own words name their category, none of them the list's first (billing).
EVENTS = [
    (EventInput("t1", "twilio", "message.received", {"Body": "thanks!", "From": "+15550100"}, "thanks!"), "other"),
    (EventInput("t1", "github", "workflow_run.completed",
                {"workflow_run": {"name": "CI", "conclusion": "failure", "head_branch": "main"}}), "alert"),
    (EventInput("t1", "intercom", "conversation.user.created", {}, "Could we get a quote for 40 seats?"), "sales"),
    (EventInput("t1", "slack", "message", {}, "I can't log in, please help"), "support"),
]


@pytest.fixture
async def greedy_engine(pool):
    await apply_migrations(pool, "ai", MIGRATIONS)
    with FakeAIServer(keyword_greedy(WORDS)) as server:
        def make(provider: str) -> AIEngine:
            env = {"SWITCHBOARD_AI_ANTHROPIC_BASE_URL": server.url, "SWITCHBOARD_AI_ANTHROPIC_API_KEY": "sk-ant-t",
                   "SWITCHBOARD_AI_OPENAI_BASE_URL": f"{server.url}/v1", "SWITCHBOARD_AI_OPENAI_API_KEY": "sk-t"}
            return AIEngine(load_registry(env=env), AIStore(pool, BOX), (provider,), ProviderGate({}),
                            CircuitBreakers(threshold=2, cooldown_s=60), ResponseCache(0), timeout_s=5)

        yield make, server


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
@pytest.mark.parametrize("prompt", ["built-in", "old"])
async def test_a_keyword_greedy_model_follows_the_event_with_the_built_in_prompt_only(greedy_engine, provider,
                                                                                      prompt) -> None:
    make, server = greedy_engine
    engine = make(provider)
    if prompt == "old":
        saved = await engine.store.save_prompt("t1", "classify", OLD_SYSTEM, OLD_TEMPLATE)
        assert saved.version == 1
    answers = []
    for event, expected in EVENTS:
        answer = await engine.classify(event, lane="normal")
        assert (answer.provider, answer.model, answer.passed_over) == (provider, "greedy-1", ())
        answers.append((answer.value.category, expected))
    asked = [user_message(r) for r in server.received]
    if prompt == "built-in":
        assert all(category == expected for category, expected in answers), answers
        assert all(text.startswith("Event type: ") for text in asked)
    else:
        # Biased: the list's first category every time, whatever the event said.
        assert [category for category, _ in answers] == ["billing"] * len(EVENTS)
        assert all(text.startswith("Categories: billing, ") for text in asked)


def test_the_built_in_prompt_shows_the_event_first_and_the_categories_after_it_alphabetically() -> None:
    event, _ = EVENTS[0]
    system, text = render(BUILTIN["classify"], event, ("support", "billing", "Zebra", "other", "alert"),
                          fallback="other")
    assert text.startswith("Event type: message.received\nSource: twilio\nText: thanks!\n")
    assert text.index("thanks!") < text.index("- alert:") < text.index("- billing:") < text.index("- other:") \
        < text.index("- support:") < text.index("- Zebra")
    assert "- other: nothing to act on" in text and "fits no other category" in text
    assert "order means nothing" in system and "order means nothing" in text
    assert BUILTIN["classify"].builtin_revision == 2
    assert category_guide(("refunds", "billing")) == \
        "- billing: money owed, paid or disputed: invoices, charges, refunds, cards, subscription payments\n- refunds"
