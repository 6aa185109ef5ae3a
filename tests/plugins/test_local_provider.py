"""The ``local`` AI provider: accuracy on labelled events, the miss families, and its rules one by one.

tests/fixtures/ai/ holds three labelled sets (docs/ai.md says how each was made):

- corpus_train.jsonl: generated events the model is trained on (``python -m plugins.ai.local.training``);
- corpus_holdout.jsonl: events written one by one in five batches by three hands; batches 3 and 5 are held out
  (``"split": "holdout"``, never trained on; batch 5 measured once), batches 1, 2 and 4 were measured too often
  to stay held out and are trained on (``"split": "dev"``);
- corpus_dev.jsonl: events written one by one to choose the model's design by, trained on too;
- labelled_events.jsonl: the events the rules were tuned on (no ``split``) and 44 held out by then
  (``"split": "holdout"``), labelled by another hand with a slightly different guide (CI failures and
  users' bug reports on GitHub as ``code``, thanks as ``support``).

The held-out figures are the honest ones; ``pytest -s`` prints them with their confusion matrices.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from plugins.ai.local import DEFAULT_CATEGORIES, LocalProvider, classify, draft_reply, extract
from plugins.ai.local.classification import priority_inputs
from plugins.ai.local.model import PRIORITY_WEIGHTS_PATH, WEIGHTS_PATH, shipped
from plugins.ai.local.training import load, measure, train, train_priority, training_rows
from plugins.ai.spec import AIRequest, EventInput, ProviderError, Turn
from plugins.manager import load_registry
from services.router.conditions import AIConditions

FIXTURES = Path(__file__).parents[1] / "fixtures"
LABELLED = load(FIXTURES / "ai" / "labelled_events.jsonl")
TRAIN = load(FIXTURES / "ai" / "corpus_train.jsonl")
HAND_WRITTEN = load(FIXTURES / "ai" / "corpus_holdout.jsonl")
HOLDOUT = [r for r in HAND_WRITTEN if r["split"] == "holdout"]
FIELDS = ("category", "priority", "sentiment")
SOURCES = {"stripe", "github", "slack", "intercom", "twilio", "api"}
# The issue's target: 0.90 category accuracy on the held-out corpus, no category's recall below 0.80.
TARGET = {"accuracy": 0.90, "recall": 0.80}
# Just below what the shipped model achieves (docs/ai.md): a drop means a change made things worse.
FLOORS = {
    "corpus_holdout": {"category": 0.91, "priority": 0.85, "sentiment": 0.77, "recall": 0.84},
    # The priority rules were tuned on these 149 (0.872 by the rules alone, in-sample for them); the priority
    # model, trained on the corpus's labelling, agrees less with this older hand's (docs/ai.md).
    "labelled_tuning": {"category": 0.85, "priority": 0.77, "sentiment": 0.88},
    "labelled_holdout": {"category": 0.72, "priority": 0.66, "sentiment": 0.79},
}


def _event(row: dict, tenant: str = "ten_test") -> EventInput:
    return EventInput(tenant, row["source_type"], row["event_type"], row["payload"], row["text"])


def _request(task: str, event: EventInput | None = None, **kwargs) -> AIRequest:
    # The local provider never reads system/prompt: they are left empty on purpose.
    return AIRequest(task, "", "", kwargs.pop("output_schema", None), event=event, **kwargs)


def _print(name: str, rows: list[dict]):
    figures = measure(rows)
    print(f"\nlocal provider, {name} ({figures.events} events): category {figures.accuracy:.3f}, "
          f"priority {figures.priority:.3f}, sentiment {figures.sentiment:.3f}\n{figures.table()}")
    return figures


def test_the_corpora_are_many_varied_and_well_formed() -> None:
    for rows in (TRAIN, HAND_WRITTEN, LABELLED):
        for row in rows:
            assert set(row) >= {"source_type", "event_type", "payload", "text", *FIELDS}
            assert row["category"] in DEFAULT_CATEGORIES
            assert row["priority"] in ("low", "normal", "high", "urgent")
            assert row["sentiment"] in ("negative", "neutral", "positive")
    for source in SOURCES:  # several hundred training events per provider, across the categories
        assert sum(r["source_type"] == source for r in TRAIN) >= 600
    assert {r["source_type"] for r in HOLDOUT} == SOURCES and len(HOLDOUT) >= 300
    assert {r["split"] for r in HAND_WRITTEN} == {"dev", "holdout"}
    for category in DEFAULT_CATEGORIES:
        assert sum(r["category"] == category for r in HOLDOUT) >= 45
    assert len({r["text"] for r in TRAIN}) >= 2000  # varied, not one template repeated
    # No held-out text of more than three words is a training text ("k" and "Cool" are in both, as in life).
    trained = {r["text"].strip().lower() for r in training_rows()}
    assert not [r["text"] for r in HOLDOUT if len(r["text"].split()) > 3 and r["text"].strip().lower() in trained]


def test_the_shipped_weights_are_what_the_corpus_trains() -> None:
    """Retraining from the corpus gives model.json and priority.json exactly: the weights cannot drift from
    it silently."""
    rows = training_rows()
    weights = train(rows)
    assert weights.to_json() == WEIGHTS_PATH.read_text(encoding="utf-8"), \
        "model.json is stale: run python -m plugins.ai.local.training"
    assert train_priority(rows, weights).to_json() == PRIORITY_WEIGHTS_PATH.read_text(encoding="utf-8"), \
        "priority.json is stale: run python -m plugins.ai.local.training"
    assert WEIGHTS_PATH.stat().st_size + PRIORITY_WEIGHTS_PATH.stat().st_size < 2_000_000


def test_accuracy_on_the_held_out_corpus() -> None:
    figures = _print("held-out corpus", HOLDOUT)
    for batch in (3, 5):
        _print(f"held-out corpus, batch {batch}", [r for r in HOLDOUT if r.get("batch") == batch])
    floors = FLOORS["corpus_holdout"]
    assert figures.accuracy >= floors["category"]
    assert figures.priority >= floors["priority"] and figures.sentiment >= floors["sentiment"]
    assert min(figures.recall.values()) >= floors["recall"], figures.recall


def test_the_issues_target_on_the_held_out_corpus() -> None:
    """0.90 category accuracy and no recall below 0.80 on the held-out batches together, and on batch 5 alone:
    written by a third hand while the last training templates were, and measured once, the cleanest figure."""
    for rows in (HOLDOUT, [r for r in HOLDOUT if r["batch"] == 5]):
        figures = measure(rows)
        assert figures.accuracy >= TARGET["accuracy"], figures.accuracy
        assert min(figures.recall.values()) >= TARGET["recall"], figures.recall


@pytest.mark.parametrize("split", ["tuning", "holdout"])
def test_accuracy_on_the_older_labelled_events(split: str) -> None:
    rows = [row for row in LABELLED if row.get("split", "tuning") == split]
    figures = _print(f"labelled_events.jsonl, {split}", rows)
    floors = FLOORS[f"labelled_{split}"]
    assert figures.accuracy >= floors["category"]
    assert figures.priority >= floors["priority"] and figures.sentiment >= floors["sentiment"]


# ----------------------------------------------------------------- the issue's miss families

GITHUB_REPO = {"full_name": "acme/shop", "name": "shop"}


@pytest.mark.parametrize(("source", "event_type", "payload", "text", "category"), [
    # CI and deployment failures are alerts, their successes code.
    ("github", "workflow_run.completed", {"action": "completed", "repository": GITHUB_REPO, "workflow_run": {
        "name": "CI", "head_branch": "main", "status": "completed", "conclusion": "failure"}}, "", "alert"),
    ("github", "deployment_status.created", {"repository": GITHUB_REPO, "deployment_status": {
        "state": "failure", "environment": "production", "description": "Readiness probe failed"}}, "", "alert"),
    ("github", "workflow_run.completed", {"action": "completed", "repository": GITHUB_REPO, "workflow_run": {
        "name": "CI", "head_branch": "main", "status": "completed", "conclusion": "success"}}, "", "code"),
    ("slack", "message", {}, "the build on main is failing since this morning, tests time out", "alert"),
    # Bug reports and outages through an issue tracker or SMS are support or alert, not code or billing.
    ("github", "issues.opened", {"action": "opened", "repository": GITHUB_REPO, "issue": {
        "title": "App freezes when I open the settings", "body": "Every time, since version 3.2. Very annoying."}},
     "", "support"),
    ("github", "issues.opened", {"action": "opened", "repository": GITHUB_REPO, "issue": {
        "title": "Hosted API down", "body": "Every request returns 503 since 10 minutes, all customers affected."}},
     "", "alert"),
    ("twilio", "message.received", {}, "your website has been down for an hour, I can't book anything", "alert"),
    ("twilio", "message.received", {}, "the app crashes every time I try to open my bookings", "support"),
    # Review requests in chat are code.
    ("slack", "message", {}, "could someone review my pull request for the invoice export? it's tiny", "code"),
    # A plain commerce event is sales; a payment problem billing.
    ("api", "order.created", {"order": {"number": "A-77", "total": "120.00", "items": [{"sku": "TEE-1"}]}}, "",
     "sales"),
    ("api", "payment.failed", {"payment": {"amount": 120, "reason": "card_declined"}}, "", "billing"),
])
def test_the_issues_miss_families(source: str, event_type: str, payload: dict, text: str, category: str) -> None:
    from switchboard.event_text import event_text
    answer = classify(EventInput("t", source, event_type, payload, text or event_text(payload)))
    assert answer["category"] == category, answer


@pytest.mark.parametrize("text", ["ok thanks", "👍", "good morning everyone!", "lol", "sounds good, talk tomorrow",
                                  "Thanks a lot, have a nice weekend"])
@pytest.mark.parametrize("source", ["slack", "twilio", "intercom"])
def test_small_talk_is_other_with_a_low_confidence(source: str, text: str) -> None:
    event_type = {"slack": "message", "twilio": "message.received", "intercom": "conversation.user.replied"}[source]
    answer = classify(EventInput("t", source, event_type, {}, text))
    assert answer["category"] == "other" and answer["confidence"] <= 0.45, answer
    assert answer["priority"] == "low"


def test_a_route_with_min_confidence_skips_small_talk() -> None:
    route = AIConditions.parse({"min_confidence": 0.6})
    assert route is not None
    small_talk = classify(EventInput("t", "slack", "message", {}, "haha nice, thanks 🙂"))
    matched, reasons = route.evaluate(small_talk)
    assert not matched and "< 0.6" in reasons[0]
    business = classify(EventInput("t", "slack", "message", {}, "We were charged twice for March, please refund"))
    assert route.evaluate(business)[0] and business["category"] == "billing"


def test_the_tenants_fallback_category_answers_small_talk() -> None:
    categories = ("billing", "support", "sales", "triage")
    answer = classify(EventInput("t", "twilio", "message.received", {}, "ok cool thx"), categories, "triage")
    assert (answer["category"], answer["confidence"] <= 0.45) == ("triage", True)
    # Without "other" and without a fallback: the last category; a fallback that is not a category is ignored.
    assert classify(EventInput("t", "slack", "message", {}, "lol"), ("billing", "misc"))["category"] == "misc"
    assert classify(EventInput("t", "slack", "message", {}, "lol"), DEFAULT_CATEGORIES, "nope")["category"] == "other"
    # An event whose category the tenant lacks goes to the fallback too, with a low confidence.
    ci = classify(EventInput("t", "slack", "message", {}, "please review my PR #12"), ("billing", "sales", "misc"))
    assert ci["category"] == "misc" and ci["confidence"] <= 0.45


def test_answers_name_the_features_that_decided() -> None:
    answer = classify(EventInput("t", "stripe", "invoice.payment_failed", {}, "Your invoice payment failed"))
    assert answer["category"] == "billing" and 1 <= len(answer["reasons"]) <= 3
    assert any("payment" in reason or "invoice" in reason or "billing" in reason for reason in answer["reasons"])
    other = classify(EventInput("t", "slack", "message", {}, "ok thanks"))
    assert other["reasons"]


async def test_every_classify_answer_is_valid_json_in_bounds() -> None:
    provider = LocalProvider()
    for row in LABELLED:
        response = await provider.complete(_request("classify", _event(row), categories=DEFAULT_CATEGORIES))
        answer = json.loads(response.text)
        assert set(answer) == {"category", "priority", "sentiment", "confidence", "summary", "reasons"}
        assert answer["category"] in DEFAULT_CATEGORIES
        assert answer["priority"] in ("low", "normal", "high", "urgent")
        assert answer["sentiment"] in ("negative", "neutral", "positive")
        assert isinstance(answer["confidence"], float) and 0.0 <= answer["confidence"] <= 1.0
        assert answer["summary"] and len(answer["summary"]) <= 140 and "\n" not in answer["summary"]
        assert response.model == "local-linear-2"


async def test_the_answer_is_valid_against_the_hosts_schema() -> None:
    from services.ai.answers import parse_classification
    for row in [*LABELLED[::7], *HOLDOUT[::11]]:
        response = await LocalProvider().complete(_request("classify", _event(row)))
        parsed = parse_classification(response.text, DEFAULT_CATEGORIES)  # what services/ai asks of it
        assert parsed.reasons


def test_it_is_registered_as_local_free_and_always_available() -> None:
    provider = load_registry(env={}).ai_provider("local")
    assert provider.name == "local"
    assert provider.available is True
    assert provider.cost_per_million_tokens == (0.0, 0.0)


def test_answers_are_deterministic() -> None:
    first = [classify(_event(row)) for row in LABELLED]
    again = [classify(_event(row)) for row in reversed(LABELLED)][::-1]
    assert first == again


def test_summaries_name_the_facts() -> None:
    stripe = json.loads((FIXTURES / "sources" / "stripe.json").read_text())
    answer = classify(EventInput("t", "stripe", "invoice.paid", stripe, ""))
    assert answer["summary"] == "Stripe invoice.paid: customer jenny.rosen@example.com, 20.00 USD"
    github = json.loads((FIXTURES / "sources" / "github.json").read_text())
    answer = classify(EventInput("t", "github", "issues.opened", github,
                                 "I'm having a problem with this. | Found a bug"))
    assert answer["summary"] == "GitHub issues.opened in octocat/Hello-World: Found a bug"
    slack = json.loads((FIXTURES / "sources" / "slack.json").read_text())
    answer = classify(EventInput("t", "slack", "message", slack, slack["event"]["text"]))
    assert answer["summary"] == "Slack message: Hello world, the export is broken again, please help"
    assert "XXYYZZ" not in classify(EventInput("t", "slack", "message", slack, ""))["summary"]  # the token


def test_the_source_sets_the_default_and_the_text_overrides_it() -> None:
    support = classify(EventInput("t", "intercom", "conversation.user.created", {}, "How do I add a teammate?"))
    billing = classify(EventInput("t", "intercom", "conversation.user.created", {}, "I was charged twice, refund me"))
    sales = classify(EventInput("t", "twilio", "message.received", {}, "Can I get a quote for 40 seats?"))
    assert (support["category"], billing["category"], sales["category"]) == ("support", "billing", "sales")
    assert classify(EventInput("t", "stripe", "invoice.payment_failed", {}, ""))["category"] == "billing"
    assert classify(EventInput("t", "github", "push", {}, ""))["category"] == "code"
    assert classify(EventInput("t", "api", "monitor.alert", {}, ""))["category"] == "alert"
    assert classify(EventInput("t", "api", "deal.created", {}, ""))["category"] == "sales"


def test_nothing_to_go_on_is_other_or_the_tenants_last_category() -> None:
    event = EventInput("t", "api", "thing.happened", {"n": 1}, "")
    answer = classify(event)
    assert answer["category"] == "other" and answer["confidence"] <= 0.45
    assert classify(event, ("bugs", "money", "misc"))["category"] == "misc"


def test_tenant_categories_match_by_name_and_stem() -> None:
    categories = ("refunds", "shipping", "bugs", "misc")
    refund = classify(EventInput("t", "intercom", "conversation.user.created", {}, "I want a refund for order 12"),
                      categories)
    shipped = classify(EventInput("t", "twilio", "message.received", {}, "When will my parcel be shipped?"),
                       categories)
    bug = classify(EventInput("t", "github", "issues.opened", {}, "Found a bug in the parser"), categories)
    by_type = classify(EventInput("t", "api", "shipping.label_created", {}, ""), categories)
    assert [a["category"] for a in (refund, shipped, bug, by_type)] == ["refunds", "shipping", "bugs", "shipping"]
    # Built-in categories the tenant kept use the model.
    assert classify(EventInput("t", "stripe", "invoice.paid", {}, ""), ("billing", "misc"))["category"] == "billing"


def test_confidence_follows_the_evidence() -> None:
    weak = classify(EventInput("t", "api", "thing", {}, "I have a question"))
    strong = classify(EventInput("t", "stripe", "invoice.payment_failed", {}, "Your invoice payment failed"))
    assert 0.0 <= weak["confidence"] < strong["confidence"] <= 1.0 and strong["confidence"] >= 0.9


@pytest.mark.parametrize(("text", "sentiment"), [
    ("The export is not working", "negative"),
    ("I'm not happy with the support", "negative"),
    ("The sync no longer runs", "negative"),
    ("Not bad at all, nice update", "positive"),
    ("No problem, thanks for the quick answer", "positive"),
    ("Thanks, but the import is still broken", "negative"),
    ("It was terrible before but now it works great, thank you!", "positive"),
    ("This is very frustrating", "negative"),
    ("Can you tell me the opening hours?", "neutral"),
    ("It would be nice to have dark mode", "neutral"),
    ("Good morning team", "neutral"),
])
def test_sentiment_handles_negation_contrast_and_intensifiers(text: str, sentiment: str) -> None:
    assert classify(EventInput("t", "slack", "message", {}, text))["sentiment"] == sentiment


def test_machine_events_are_neutral() -> None:
    failed_ci = {"workflow_run": {"name": "CI", "conclusion": "failure"}, "repository": {"full_name": "a/b"}}
    answer = classify(EventInput("t", "github", "workflow_run.completed", failed_ci, ""))
    assert (answer["sentiment"], answer["priority"]) == ("neutral", "high")


PRIORITY_CASES = [
    ("slack", "message", "The whole site is down for every customer", "urgent"),
    ("intercom", "conversation.user.created", "Please help ASAP, we cannot work", "urgent"),
    ("api", "error.reported", "500 errors in production since 10:02", "urgent"),
    ("api", "monitor.alert", "CPU above threshold, state triggered", "urgent"),
    ("api", "monitor.recovered", "CPU back to normal", "low"),
    ("stripe", "invoice.payment_failed", "", "high"),
    ("stripe", "charge.failed", "", "high"),
    ("slack", "message", "The export is broken again", "high"),
    ("slack", "message", "This is the worst support I have ever had", "high"),
    ("slack", "message", "How do I add a user?", "normal"),
    ("slack", "message", "Thanks a lot, works perfectly", "low"),
    ("stripe", "invoice.paid", "", "low"),
    ("github", "push", "Fix typo in error message", "low"),
    ("slack", "message", "[RESOLVED] HighErrorRate back to 0.3%", "low"),
    ("intercom", "conversation.user.replied", "My ticket was never resolved, this is unacceptable", "high"),
]


@pytest.mark.parametrize(("source", "event_type", "text", "priority"), PRIORITY_CASES)
def test_priority_rules(source: str, event_type: str, text: str, priority: str) -> None:
    """The rules' level, one of the priority model's features."""
    inputs = priority_inputs(EventInput("t", source, event_type, {}, text), shipped())
    assert [name for name in inputs if name.startswith("prule:")] == [f"prule:{priority}"]


@pytest.mark.parametrize(("source", "event_type", "text", "priority"), [
    case for case in PRIORITY_CASES
    # The corpus labels a customer's ASAP as high, and so does the model (docs/ai.md, Limits).
    if case[2] != "Please help ASAP, we cannot work"])
def test_the_priority_model_answers_the_clear_cases(source: str, event_type: str, text: str, priority: str) -> None:
    assert classify(EventInput("t", source, event_type, {}, text))["priority"] == priority


def test_a_huge_payload_is_capped_not_walked() -> None:
    big = {"items": [{"id": f"it_{i}", "note": "lorem ipsum dolor sit amet " * 20, "nested": {"x": i}}
                     for i in range(5000)],
           "blob": "x" * 500_000}
    assert len(json.dumps(big)) > 1_000_000
    started = time.perf_counter()
    answer = classify(EventInput("t", "api", "bulk.import", big, "lorem " * 200_000))
    elapsed = time.perf_counter() - started
    print(f"\n1 MB payload classified in {elapsed * 1000:.1f} ms")  # reported, not asserted
    assert answer["category"] in DEFAULT_CATEGORIES
    extract(EventInput("t", "api", "bulk.import", big, ""),
            {"type": "object", "properties": {"note": {"type": "string"}}})


# ----------------------------------------------------------------- extract

ORDER = {
    "type": "order.created",
    "data": {
        "order": {"orderNumber": "A-1001", "Total": "1,249.50", "itemCount": "3", "gift": "yes",
                  "customer": {"E-Mail": "ana@example.com", "id": "cus_9", "fullName": "Ana Lima"}},
        "notes": "Call me on +1 415 555 0100 or see https://shop.example.com/o/A-1001. Invoice INV-2024-0042.",
    },
}


def test_extract_finds_nested_keys_and_coerces_types() -> None:
    schema = {
        "type": "object",
        "properties": {
            "order_number": {"type": "string"},
            "total": {"type": "number"},
            "item_count": {"type": "integer"},
            "gift": {"type": "boolean"},
            "email": {"type": "string"},
            "customer_name": {"type": "string"},
            "customer": {"type": "object", "properties": {"id": {"type": "string"}, "email": {"type": "string"}}},
        },
    }
    answer = extract(EventInput("t", "api", "order.created", ORDER, ""), schema)
    assert answer == {"order_number": "A-1001", "total": 1249.5, "item_count": 3, "gift": True,
                      "email": "ana@example.com", "customer_name": "Ana Lima",
                      "customer": {"id": "cus_9", "email": "ana@example.com"}}


def test_extract_falls_back_to_regexes_over_the_text() -> None:
    event = EventInput("t", "twilio", "message.received", {"Body": "x"},
                       "Hi, I paid $59.99 for order #B-7781, reach me at bo@example.org")
    schema = {"type": "object", "properties": {"amount": {"type": "number"}, "order_id": {"type": "string"},
                                               "contact_email": {"type": "string"}, "website": {"type": "string"}}}
    assert extract(event, schema) == {"amount": 59.99, "order_id": "#B-7781", "contact_email": "bo@example.org"}
    notes = extract(EventInput("t", "api", "order.created", ORDER, ""), {"type": "object", "properties": {
        "phone": {"type": "string"}, "link": {"type": "string"}, "invoice_id": {"type": "string"}}})
    assert notes == {"phone": "+1 415 555 0100", "link": "https://shop.example.com/o/A-1001",
                     "invoice_id": "INV-2024-0042"}


def test_extract_respects_enums() -> None:
    stripe = json.loads((FIXTURES / "sources" / "stripe.json").read_text())
    schema = {"type": "object", "properties": {"currency": {"type": "string", "enum": ["USD", "EUR"]},
                                               "status": {"enum": ["open", "void"]}}}
    assert extract(EventInput("t", "stripe", "invoice.paid", stripe, ""), schema) == {"currency": "USD"}


async def test_required_but_missing_is_null_when_allowed_else_a_provider_error() -> None:
    event = EventInput("t", "api", "order.created", ORDER, "")
    nullable = {"type": "object", "properties": {"tracking_code": {"type": ["string", "null"]}},
                "required": ["tracking_code"]}
    response = await LocalProvider().complete(_request("extract", event, output_schema=nullable))
    assert json.loads(response.text) == {"tracking_code": None}
    strict = {"type": "object", "properties": {"tracking_code": {"type": "string"}}, "required": ["tracking_code"]}
    with pytest.raises(ProviderError, match="tracking_code") as caught:
        await LocalProvider().complete(_request("extract", event, output_schema=strict))
    assert caught.value.retryable is False


# ----------------------------------------------------------------- reply


async def test_reply_acknowledges_names_the_topic_and_promises_a_follow_up() -> None:
    turns = (Turn("customer", "Hi, I was charged twice for March. Can you fix it?"),
             Turn("agent", "Sorry about that, checking."),
             Turn("customer", "Any news? The duplicate charge is still on my card."))
    event = EventInput("t", "intercom", "conversation.user.replied", {}, turns[-1].text)
    response = await LocalProvider().complete(_request("reply", event, turns=turns))
    reply = response.text
    assert len(reply) <= 600 and reply.startswith("Hi,")
    assert "billing" in reply and "Any news?" in reply  # the last customer turn, not the first
    assert "get back to you" in reply
    for invented in ("refund", "tomorrow", "days", "%"):  # no promise it cannot keep
        assert invented not in reply.lower()


def test_reply_is_short_even_for_a_long_message_and_works_without_turns() -> None:
    long_text = "The dashboard does not load " + "and nothing works " * 200
    assert len(draft_reply((Turn("customer", long_text),))) <= 600
    assert "get back to you" in draft_reply(())
    tenant = draft_reply((Turn("customer", "Where is my parcel? It has not been shipped"),),
                         categories=("shipping", "misc"))
    assert "shipping" in tenant


async def test_unknown_tasks_and_missing_events_are_not_retryable() -> None:
    with pytest.raises(ProviderError) as caught:
        await LocalProvider().complete(_request("translate", EventInput("t", "api", "x", {}, "")))
    assert caught.value.retryable is False
    with pytest.raises(ProviderError):
        await LocalProvider().complete(_request("classify", None))
