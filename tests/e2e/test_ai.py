"""AIService end to end: the /v1/ai API on the running platform, with the local provider and with
Anthropic's SDK talking to a loopback stand-in for its API."""

from __future__ import annotations

import json

import grpc
import pytest

from switchboard.v1 import ai_pb2, ai_pb2_grpc
from tests.ai_servers import FakeAIServer, Reply, anthropic_error, anthropic_message
from tests.e2e.test_auth import tenant_with_key
from tests.e2e.slice import wait_routed
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e

TICKET = {"type": "conversation.user.replied", "source_type": "intercom",
          "payload": {"data": {"item": {"id": "conv_1",
                                        "source": {"body": "My invoice is wrong and I was charged twice!"}}}}}


def test_settings_prompts_and_the_three_tasks_with_the_local_provider(platform: Platform) -> None:
    with platform.client() as api:
        settings = api.get("/v1/ai/settings").json()
        assert settings["providers"] == ["local"]
        assert settings["categories"] == ["billing", "code", "support", "sales", "alert", "other"]
        assert {(p["task"], p.get("version", 0)) for p in settings["prompts"]} == \
            {("classify", 0), ("extract", 0), ("reply", 0)}

        classified = api.post("/v1/ai/classify", json=TICKET).json()
        assert classified["category"] == "billing" and classified["meta"]["provider"] == "local"
        assert classified["sentiment"] == "negative" and 0 <= classified["confidence"] <= 1

        changed = api.patch("/v1/ai/settings", json={"categories": ["payments", "tickets", "other"]})
        assert changed.status_code == 200 and changed.json()["categories"] == ["payments", "tickets", "other"]
        assert api.post("/v1/ai/classify", json=TICKET).json()["category"] in ("payments", "tickets", "other")

        extracted = api.post("/v1/ai/extract", json={**TICKET, "schema": {
            "type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}}).json()
        assert extracted["data"] == {"id": "conv_1"}

        reply = api.post("/v1/ai/reply", json={**TICKET, "conversation_key": "conv_1"}).json()
        assert reply["text"] and reply["meta"]["provider"] == "local"

        first = api.post("/v1/ai/prompts", json={"task": "classify", "system": "Triage.", "template": "$event_type"})
        second = api.post("/v1/ai/prompts", json={"task": "classify", "system": "Triage!", "template": "$text"})
        assert (first.status_code, first.json()["version"], second.json()["version"]) == (201, 1, 2)
        current = {p["task"]: p for p in api.get("/v1/ai/settings").json()["prompts"]}
        assert current["classify"]["version"] == 2 and current["classify"]["template"] == "$text"

        usage = api.get("/v1/ai/usage").json()["data"]
        assert usage[0]["provider"] == "local" and int(usage[0]["requests"]) >= 4

        _, other_key = tenant_with_key(platform, "other", "admin")
        with platform.client(other_key) as other:
            assert other.get("/v1/ai/settings").json()["categories"][0] == "billing"
            assert other.get("/v1/ai/usage").json()["data"] == []


@pytest.mark.parametrize("path,body,message", [
    ("/v1/ai/settings", {"providers": ["skynet"]}, "unknown AI providers skynet"),
    ("/v1/ai/settings", {"categories": [""]}, "categories are 1 to 50 characters"),
    ("/v1/ai/settings", {"model": "x"}, "model: unknown field"),
    ("/v1/ai/settings", {"provider_keys": {"local": "sk-local-1234"}}, "'local' takes no key of a tenant's own"),
    ("/v1/ai/settings", {"provider_keys": {"anthropic": "short"}}, "8 to 500 printable characters"),
    ("/v1/ai/prompts", {"task": "classify", "system": "s", "template": "$password"}, "unknown placeholders"),
    ("/v1/ai/prompts", {"task": "dance", "system": "s", "template": "t"}, "task: must be one of classify, extract"),
    ("/v1/ai/classify", {"type": "x"}, "payload: is required"),
    ("/v1/ai/classify", {**TICKET, "lane": "fast"}, "lane: must be one of urgent, normal"),
    ("/v1/ai/extract", {**TICKET, "schema": {"type": "array"}}, "schema must be a JSON schema of an object"),
    ("/v1/ai/reply", TICKET, "conversation_key: is required"),
])
def test_bad_ai_requests_are_400_with_a_clear_message(refusing_platform: Platform, path: str, body: dict,
                                                      message: str) -> None:
    with refusing_platform.client() as api:
        reply = api.patch(path, json=body) if path.endswith("settings") else api.post(path, json=body)
        assert reply.status_code == 400 and message in reply.json()["error"]["message"], reply.text


def test_anthropic_answers_and_when_it_fails_local_does(platform_factory) -> None:
    with FakeAIServer() as anthropic:
        platform = platform_factory(SWITCHBOARD_AI_PROVIDER="anthropic", SWITCHBOARD_AI_ANTHROPIC_API_KEY="sk-ant-test",
                                    SWITCHBOARD_AI_ANTHROPIC_BASE_URL=anthropic.url, SWITCHBOARD_AI_CACHE_TTL="0")
        labels = {"category": "billing", "priority": "urgent", "sentiment": "negative", "confidence": 0.97,
                  "summary": "Customer charged twice"}
        anthropic.reply(Reply(body=anthropic_message(
            [{"type": "tool_use", "id": "toolu_1", "name": "answer", "input": labels}], model="claude-test")))
        with platform.client() as api:
            assert api.get("/v1/ai/settings").json()["providers"] == ["anthropic", "local"]
            answer = api.post("/v1/ai/classify", json=TICKET).json()
            assert (answer["priority"], answer["summary"]) == ("urgent", "Customer charged twice")
            assert answer["meta"]["provider"] == "anthropic" and answer["meta"]["model"] == "claude-test"

            anthropic.reply(Reply(status=529, body=anthropic_error("overloaded_error", "Overloaded")))
            fallback = api.post("/v1/ai/classify", json=TICKET).json()
            assert fallback["meta"]["provider"] == "local"
            assert fallback["meta"]["passed_over"][0].startswith("anthropic: ")
            providers = {row["provider"]: row for row in api.get("/v1/ai/usage").json()["data"]}
            assert int(providers["anthropic"]["failures"]) == 1 and int(providers["anthropic"]["requests"]) == 2

            # Routing by AI labels goes on while Anthropic fails (its stand-in now answers 500): local labels.
            with Receiver() as receiver:
                endpoint = api.post("/v1/endpoints", json={"url": receiver.url}).json()["id"]
                api.post("/v1/routes", json={"ai": {"category": ["billing"]}, "endpoint_ids": [endpoint]}
                         ).raise_for_status()
                event_id = api.post("/v1/events", json={"type": TICKET["type"], "payload": TICKET["payload"]}
                                    ).json()["event_id"]
                receiver.wait_for(lambda r: len(r) == 1)
                routing = api.get(f"/v1/events/{event_id}").json()["routing"]
                assert routing["ai"]["provider"] == "local" and routing["ai"]["passed_over"][0].startswith("anthropic")
                # The routing explanation says why the local provider chose billing, on both priority scales.
                assert routing["ai"]["category"] == "billing" and routing["ai"]["reasons"], routing["ai"]
                assert routing["ai"]["priority_builtin"] in ("urgent", "high", "normal", "low")

        with platform.service_channel("ai") as channel:
            stub = ai_pb2_grpc.AIServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Classify(ai_pb2.ClassifyRequest(event=ai_pb2.AIEvent(tenant_id="t", payload_json="{nope")),
                              timeout=5)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_tenant_brings_its_own_anthropic_key(platform_factory) -> None:
    """The deployment has no Anthropic key; a tenant that sets its own is answered by Anthropic with it,
    shown only masked; removed, local answers again."""
    with FakeAIServer() as anthropic:
        platform = platform_factory(SWITCHBOARD_AI_PROVIDER="anthropic",
                                    SWITCHBOARD_AI_ANTHROPIC_BASE_URL=anthropic.url, SWITCHBOARD_AI_CACHE_TTL="0")
        own = "sk-ant-tenant-" + "t" * 20 + "9876"
        labels = {"category": "billing", "priority": "urgent", "sentiment": "negative", "confidence": 0.97,
                  "summary": "Customer charged twice"}
        anthropic.reply(Reply(body=anthropic_message(
            [{"type": "tool_use", "id": "toolu_1", "name": "answer", "input": labels}], model="claude-test")))
        with platform.client() as api:
            assert api.post("/v1/ai/classify", json=TICKET).json()["meta"]["passed_over"] == \
                ["anthropic: not configured"]
            changed = api.patch("/v1/ai/settings", json={"provider_keys": {"anthropic": own}})
            assert changed.status_code == 200 and changed.json()["provider_keys"] == {"anthropic": "…9876"}
            assert own not in changed.text and own not in api.get("/v1/audit").text
            answer = api.post("/v1/ai/classify", json=TICKET).json()
            assert answer["meta"]["provider"] == "anthropic" and answer["priority"] == "urgent"
            assert anthropic.received[-1].headers["authorization"] == f"Bearer {own}"

            removed = api.patch("/v1/ai/settings", json={"provider_keys": {"anthropic": None}}).json()
            assert removed["provider_keys"] == {}  # every field is shown, an empty map too
            assert api.post("/v1/ai/classify", json=TICKET).json()["meta"]["provider"] == "local"
            assert len(anthropic.received) == 1


OUTAGE = {"type": "incident.triggered",
          "payload": {"incident": {"title": "Production database is down", "status": "triggered"}}}
CI_FAILED = {"type": "workflow_run.completed",
             "payload": {"workflow_run": {"name": "CI", "conclusion": "failure", "head_branch": "main"}}}
THANKS = {"type": "message.received", "payload": {"Body": "thanks!", "From": "+15550100"}}


@pytest.mark.parametrize("body,field,message", [
    ({"priority_levels": ["urgent"]}, "priority_levels", "2 to 5 levels"),
    ({"priority_levels": ["p1", "p2", "p3", "p4", "p5", "p6"]}, "priority_levels", "2 to 5 levels"),
    ({"priority_levels": ["urgent", "urgent"]}, "priority_levels[1]", "names 'urgent' twice"),
    ({"priority_levels": ["urgent", "normal"],
      "priority_mapping": {"critical": "urgent", "high": "urgent", "normal": "normal", "low": "normal"}},
     "priority_mapping.critical", "'critical', which is not a built-in level"),
    ({"priority_levels": ["urgent", "normal"], "priority_mapping": {"urgent": "urgent", "high": "urgent"}},
     "priority_mapping", "misses normal, low"),
    ({"priority_levels": ["urgent", "normal"],
      "priority_mapping": {"urgent": "urgent", "high": "soon", "normal": "normal", "low": "normal"}},
     "priority_mapping.high", "'soon' is not one of priority_levels (urgent, normal)"),
])
def test_bad_priority_scales_are_400_naming_the_field(refusing_platform: Platform, body: dict, field: str,
                                                      message: str) -> None:
    with refusing_platform.client() as api:
        reply = api.patch("/v1/ai/settings", json=body)
        assert reply.status_code == 400, reply.text
        assert message in reply.json()["error"]["message"] and reply.json()["error"]["field"] == field, reply.text
        assert api.get("/v1/ai/settings").json()["priority_levels"] == ["urgent", "high", "normal", "low"]


def test_a_tenant_with_two_priority_levels_classifies_and_routes_on_them(platform: Platform) -> None:
    """Levels "urgent" and "normal": the built-in urgent and high fold onto "urgent", normal and low onto
    "normal"; routes name the tenant's levels, and are refused a level it does not have."""
    with platform.client() as api, Receiver() as receiver:
        settings = api.patch("/v1/ai/settings", json={"priority_levels": ["urgent", "normal"]}).json()
        assert settings["priority_levels"] == ["urgent", "normal"]
        assert settings["priority_mapping"] == {"urgent": "urgent", "high": "urgent", "normal": "normal",
                                                "low": "normal"}
        answers = {name: api.post("/v1/ai/classify", json=event).json()
                   for name, event in (("outage", OUTAGE), ("ci", CI_FAILED), ("thanks", THANKS))}
        assert {name: (a["priority"], a["priority_builtin"]) for name, a in answers.items()} == {
            "outage": ("urgent", "urgent"), "ci": ("urgent", "high"), "thanks": ("normal", "low")}
        assert answers["outage"]["category"] == "alert"

        endpoint = api.post("/v1/endpoints", json={"url": receiver.url}).json()["id"]
        refused = api.post("/v1/routes", json={"ai": {"priority": ["high"]}, "endpoint_ids": [endpoint]})
        assert refused.status_code == 400, refused.text
        assert "priority levels (urgent, normal), not 'high'" in refused.json()["error"]["message"]
        route = api.post("/v1/routes", json={"name": "pages", "ai": {"priority": ["urgent"]},
                                             "endpoint_ids": [endpoint]})
        assert route.status_code == 201, route.text

        thanks = api.post("/v1/events", json=THANKS).json()["event_id"]
        outage = api.post("/v1/events", json=OUTAGE).json()["event_id"]
        receiver.wait_for(lambda r: len(r) == 1)
        assert json.loads(receiver.requests[0].body) == OUTAGE["payload"]
        routing = wait_routed(api, outage)["routing"]
        assert (routing["ai"]["priority"], routing["routes"][0]["matched"]) == ("urgent", True)
        skipped = wait_routed(api, thanks)
        assert skipped["routing"]["ai"]["priority"] == "normal" and skipped["deliveries"] == []
        assert "ai priority 'normal' not in ['urgent']" in skipped["routing"]["routes"][0]["reasons"]
        assert len(receiver.requests) == 1
