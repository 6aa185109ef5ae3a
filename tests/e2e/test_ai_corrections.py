"""Learning from corrections end to end: people label events (POST /v1/events/{id}/labels), the accuracy report
counts the AI's labels against them per provider and model, model providers are shown them as examples
(Anthropic's SDK talking to a loopback stand-in), and a tenant's local model retrains on them."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.ai_servers import FakeAIServer, Reply, anthropic_answer
from services.ai.answers import DEFAULT_CATEGORIES as AI_DEFAULT_CATEGORIES
from tests.e2e.test_auth import tenant_with_key
from tests.e2e.slice import publish, wait_routed
from tests.platform_runner import Platform
# Parcels a person says are "logistics", a category of the tenant's own the built-in model does not know.
from tests.services.ai.test_tenant_models import PARAPHRASE, PARCELS

pytestmark = pytest.mark.e2e

DEFAULT_CATEGORIES = list(AI_DEFAULT_CATEGORIES)  # a list: tests add categories of their own
BILLING_TEXT = "My invoice is wrong and I was charged twice for March"
BILLING: dict[str, Any] = {"type": "message.received", "payload": {"text": BILLING_TEXT}}
OUTAGE: dict[str, Any] = {"type": "message.received",
                          "payload": {"text": "URGENT: production is down, every request returns 503"}}
THANKS: dict[str, Any] = {"type": "message.received", "payload": {"text": "ok thanks"}}


def _classified_by_every_route(api: httpx.Client, categories: list[str] = DEFAULT_CATEGORIES) -> None:
    """A route whose AI condition every category meets: each event is classified, none is delivered."""
    api.post("/v1/routes", json={"action": "drop", "ai": {"category": categories}}).raise_for_status()


def test_labels_are_kept_shown_and_reported_against(platform: Platform) -> None:
    with platform.client() as api:
        _classified_by_every_route(api)
        ids = [publish(api, event) for event in (BILLING, OUTAGE, THANKS)]
        ai = [wait_routed(api, event_id)["routing"]["ai"] for event_id in ids]
        assert [a["category"] for a in ai] == ["billing", "alert", "other"]
        assert {(a["provider"], a["model"]) for a in ai} == {("local", "local-linear-2")}

        # The first: the AI was right (a person confirms its category); the second: it was not.
        confirmed = api.post(f"/v1/events/{ids[0]}/labels", json={"category": "billing"})
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["ai"] == {k: ai[0][k] for k in ("category", "priority", "sentiment", "provider",
                                                              "model")}
        corrected = api.post(f"/v1/events/{ids[1]}/labels", json={"category": "code", "priority": "low"}).json()
        assert (corrected["event_id"], corrected["category"], corrected["priority"]) == (ids[1], "code", "low")
        assert corrected["sentiment"] == ai[1]["sentiment"]  # left out: the AI's, confirmed
        assert platform.admin_key is not None and corrected["labelled_by"] == platform.admin_key.split("_")[2]

        shown = api.get(f"/v1/events/{ids[1]}").json()
        assert shown["labels"]["category"] == "code" and shown["labels"]["ai"]["category"] == "alert"
        assert api.get(f"/v1/events/{ids[2]}").json()["labels"] is None

        # Only the corrected events count: two, of which the AI got one category right.
        report = api.get("/v1/ai/accuracy").json()
        assert report["days"] == 30 and report["corrected"] == 2 and report["accuracy"] == 0.5
        [local] = report["data"]
        assert (local["provider"], local["model"], local["corrected"], local["category_right"]) == \
            ("local", "local-linear-2", 2, 1)
        assert local["priority_right"] == 1 + (ai[1]["priority"] == "low") and local["sentiment_right"] == 2
        assert local["accuracy"] == 0.5

        # A new correction replaces the last: the outage was an alert after all.
        api.post(f"/v1/events/{ids[1]}/labels", json={"category": "alert"}).raise_for_status()
        again = api.get("/v1/ai/accuracy?days=7").json()
        assert (again["days"], again["corrected"], again["accuracy"], again["data"][0]["priority_right"]) == \
            (7, 2, 1.0, 2)
        assert api.get(f"/v1/events/{ids[1]}").json()["labels"]["priority"] == ai[1]["priority"]

        actions = [(e["action"], e["resource"]) for e in api.get("/v1/audit").json()["data"]]
        assert ("event.label", ids[0]) in actions and actions.count(("event.label", ids[1])) == 2

        _, other_key = tenant_with_key(platform, "other-labeller", "admin")
        with platform.client(other_key) as other:
            foreign = other.post(f"/v1/events/{ids[0]}/labels", json={"category": "sales"})
            assert foreign.status_code == 404, foreign.text
            assert other.get("/v1/ai/accuracy").json() == {"days": 30, "data": [], "corrected": 0, "accuracy": 0}
        assert api.get(f"/v1/events/{ids[0]}").json()["labels"]["category"] == "billing"


BAD_LABELS = [
    ({"categroy": "billing"}, "categroy: unknown field"),
    ({}, "give the event's category, priority or sentiment"),
    ({"category": "nonsense"}, "category 'nonsense' is not one of the tenant's"),
    ({"category": ""}, "category"),
    ({"priority": "p9"}, "priority 'p9' is not one of the tenant's"),
    ({"sentiment": "furious"}, "sentiment: must be one of negative, neutral, positive"),
]


def test_bad_labels_are_400_and_an_unclassified_event_needs_its_category(platform: Platform) -> None:
    with platform.client() as api:
        event_id = publish(api, THANKS)
        assert wait_routed(api, event_id)["routing"]["ai"] is None  # no route asked for the AI
        for body, message in BAD_LABELS:
            refused = api.post(f"/v1/events/{event_id}/labels", json=body)
            assert refused.status_code == 400 and message in refused.json()["error"]["message"], refused.text
        assert api.post("/v1/events/evt_" + "0" * 32 + "/labels", json={"category": "other"}).status_code == 404

        refused = api.post(f"/v1/events/{event_id}/labels", json={"priority": "low"})
        assert refused.status_code == 400 and "was not classified: give its category" in refused.text
        labelled = api.post(f"/v1/events/{event_id}/labels", json={"category": "other"}).json()
        assert (labelled["category"], labelled["priority"], labelled["ai"]) == ("other", None, None)
        # Not classified: nothing to judge.
        assert api.get("/v1/ai/accuracy").json()["corrected"] == 0


def _answer(labels: dict[str, Any]) -> Reply:
    return anthropic_answer(labels, model="claude-test")


def test_model_providers_are_shown_the_tenants_corrections_as_examples(platform_factory) -> None:
    with FakeAIServer() as anthropic:
        platform = platform_factory(SWITCHBOARD_AI_PROVIDER="anthropic", SWITCHBOARD_AI_ANTHROPIC_API_KEY="sk-ant-test",
                                    SWITCHBOARD_AI_ANTHROPIC_BASE_URL=anthropic.url, SWITCHBOARD_AI_CACHE_TTL="0")
        wrong = {"category": "support", "priority": "normal", "sentiment": "negative", "confidence": 0.8,
                 "summary": "A parcel is late"}
        with platform.client() as api:
            api.patch("/v1/ai/settings", json={"categories": DEFAULT_CATEGORIES + ["shipping"]}).raise_for_status()
            _classified_by_every_route(api, DEFAULT_CATEGORIES + ["shipping"])
            parcel_text = "Where is my parcel? Tracking has said in transit for 9 days"
            parcel = {"type": "message.received", "payload": {"text": parcel_text}}
            anthropic.reply(_answer(wrong))
            first = publish(api, parcel)
            assert wait_routed(api, first)["routing"]["ai"]["provider"] == "anthropic"
            assert "a person labelled" not in anthropic.received[0].json["system"]  # no corrections yet: no examples

            labelled = api.post(f"/v1/events/{first}/labels", json={"category": "shipping", "priority": "high"})
            assert labelled.status_code == 200 and labelled.json()["ai"]["model"] == "claude-test"

            anthropic.reply(_answer({**wrong, "category": "shipping"}))
            second = publish(api, {"type": "message.received", "payload": {"text": "My courier never came, again"}})
            assert wait_routed(api, second)["routing"]["ai"]["category"] == "shipping"
            asked = anthropic.received[1].json
            system = asked["system"] if isinstance(asked["system"], str) else \
                "".join(block["text"] for block in asked["system"])
            assert "Events of this tenant that a person labelled" in system
            assert json.dumps(parcel_text) in system
            assert "→ category: shipping, priority: high, sentiment: negative" in system
            # The event itself stays the user message's alone.
            assert "My courier never came" in json.dumps(asked["messages"])
            assert "Tracking has said" not in json.dumps(asked["messages"])

            report = api.get("/v1/ai/accuracy").json()["data"]
            assert [(r["provider"], r["model"], r["corrected"], r["category_right"]) for r in report] == \
                [("anthropic", "claude-test", 1, 0)]


def _classify(api: httpx.Client, text: str) -> dict[str, Any]:
    answer = api.post("/v1/ai/classify", json={"type": "message.received", "source_type": "api",
                                               "payload": {"text": text}})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _model(api: httpx.Client, status: str, timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = api.get("/v1/ai/model").json()
        if model["status"] == status:
            return model
        assert model["status"] != "failed", model  # no sense waiting on: the training says why
        time.sleep(0.5)
    raise AssertionError(f"the tenant's model did not become {status}: {model}")


def test_a_tenants_local_model_retrains_on_its_corrections(platform: Platform) -> None:
    categories = DEFAULT_CATEGORIES + ["logistics"]
    _, other_key = tenant_with_key(platform, "untrained", "admin")
    with platform.client() as api, platform.client(other_key) as other:
        for client in (api, other):
            client.patch("/v1/ai/settings", json={"categories": categories}).raise_for_status()
        before = _classify(api, PARAPHRASE)
        assert before["category"] != "logistics" and before["meta"]["model"] == "local-linear-2"
        assert api.get("/v1/ai/model").json()["status"] == "builtin"
        nothing = other.post("/v1/ai/retrain", json={})
        assert nothing.status_code == 400 and "no corrections" in nothing.text

        ids = [publish(api, {"type": "message.received", "payload": {"text": text}}) for text in PARCELS]
        for event_id in ids:
            wait_routed(api, event_id)
            api.post(f"/v1/events/{event_id}/labels", json={"category": "logistics"}).raise_for_status()

        started = api.post("/v1/ai/retrain", json={})
        assert started.status_code == 202, started.text
        assert started.json()["status"] == "training" and started.json()["model"] == "local-linear-2"
        assert api.post("/v1/ai/retrain", json={}).status_code == 409
        # Training runs in a worker process: the service answers meanwhile.
        assert _classify(api, PARAPHRASE)["meta"]["model"] == "local-linear-2"

        ready = _model(api, "ready")
        assert (ready["model"], ready["corrections"]) == ("local-linear-2-tenant-v1", 3)
        assert ready["categories"] == categories and ready["error"] is None
        for text in (PARCELS[0], PARAPHRASE):
            answer = _classify(api, text)
            assert (answer["category"], answer["meta"]["model"]) == ("logistics", "local-linear-2-tenant-v1"), text
        # What the corrections did not touch is read as before.
        assert _classify(api, BILLING_TEXT)["category"] == "billing"
        # Another tenant keeps the built-in model.
        untouched = _classify(other, PARAPHRASE)
        assert (untouched["category"], untouched["meta"]["model"]) == (before["category"], "local-linear-2")
        assert other.get("/v1/ai/model").json()["status"] == "builtin"
