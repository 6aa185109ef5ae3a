"""A tenant's priority scale: checked, stored, and the level every provider's answer is given on.

Every provider answers on the built-in scale (urgent, high, normal, low); the tenant's mapping folds it onto
its own levels. Here the local provider and Anthropic's SDK (against a loopback stand-in) both answer a
tenant with two levels, "urgent" and "normal".
"""

from pathlib import Path

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from plugins.ai.spec import EventInput
from plugins.manager import load_registry
from services.ai.answers import Classification
from services.ai.engine import AIEngine, ResponseCache
from services.ai.gate import ProviderGate
from services.ai.priority_scale import BUILTIN_LEVELS, PriorityScale, checked_scale, default_mapping
from services.ai.servicer import AIServicer
from services.ai.store import AIStore
from services.router.conditions import AIConditions
from switchboard.circuit import CircuitBreakers
from switchboard.database import apply_migrations
from switchboard.errors import InvalidRequest
from switchboard.v1 import ai_pb2 as pb
from tests.ai_servers import FakeAIServer, anthropic_answer
from tests.sealing import BOX
from tests.servicer_context import Aborted, Context

MIGRATIONS = Path(__file__).parents[3] / "services/ai/migrations"
OUTAGE = EventInput("t1", "pagerduty", "incident.triggered",
                    {"incident": {"title": "Production database is down", "urgency": "high"}},
                    "Production database is down")
CI_FAILED = EventInput("t1", "github", "workflow_run.completed",
                       {"workflow_run": {"name": "CI", "conclusion": "failure", "head_branch": "main"}})
THANKS = EventInput("t1", "twilio", "message.received", {"Body": "thanks!"}, "thanks!")


def test_the_default_folds() -> None:
    assert default_mapping(["urgent", "normal"]) == {"urgent": "urgent", "high": "urgent", "normal": "normal",
                                                     "low": "normal"}
    assert default_mapping(["p1", "p2", "p3"]) == {"urgent": "p1", "high": "p1", "normal": "p2", "low": "p3"}
    assert default_mapping(list("abcd")) == dict(zip(BUILTIN_LEVELS, "abcd"))
    assert default_mapping(list("abcde")) == {"urgent": "a", "high": "b", "normal": "c", "low": "e"}
    assert PriorityScale().levels == BUILTIN_LEVELS and PriorityScale().level("high") == "high"
    two = PriorityScale.stored(("urgent", "normal"), {})
    folded = two.applied(Classification("alert", "high", "negative", 0.9, "CI failed", priority_builtin="high"))
    assert (folded.priority, folded.priority_builtin) == ("urgent", "high")
    assert two.applied(folded) == folded  # applied once more, still from the built-in level


@pytest.mark.parametrize("levels,mapping,field,message", [
    (["urgent"], None, "priority_levels", "2 to 5 levels"),
    (["a", "b", "c", "d", "e", "f"], None, "priority_levels", "2 to 5 levels"),
    (["urgent", "Urgent"], None, "priority_levels[1]", "names 'Urgent' twice"),
    (["urgent", "not urgent"], None, "priority_levels[1]", "is not a level name"),
    (["urgent", "normal"], {"critical": "urgent", "high": "urgent", "normal": "normal", "low": "normal"},
     "priority_mapping.critical", "'critical', which is not a built-in level"),
    (["urgent", "normal"], {"urgent": "urgent", "high": "urgent"}, "priority_mapping", "misses normal, low"),
    (["urgent", "normal"], {"urgent": "urgent", "high": "hot", "normal": "normal", "low": "normal"},
     "priority_mapping.high", "'hot' is not one of priority_levels (urgent, normal)"),
    (None, {"urgent": "now", "high": "now", "normal": "later", "low": "later"}, "priority_mapping.urgent",
     "not one of priority_levels (urgent, high, normal, low)"),
])
def test_bad_scales_are_refused_naming_the_field(levels, mapping, field, message) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
        checked_scale(levels, mapping, ())
    assert refused.value.field == field


def test_what_a_change_saves() -> None:
    assert checked_scale(["urgent", "normal"], None, ()) == (("urgent", "normal"), {})
    assert checked_scale([], None, ("urgent", "normal")) == ((), {})
    mapping = {"urgent": "p1", "high": "p2", "normal": "p2", "low": "p3"}
    assert checked_scale(None, mapping, ("p1", "p2", "p3")) == (("p1", "p2", "p3"), mapping)
    assert checked_scale(None, {}, ("p1", "p2", "p3")) == (("p1", "p2", "p3"), {})


@pytest.fixture
async def service(pool):
    await apply_migrations(pool, "ai", MIGRATIONS)
    with FakeAIServer() as anthropic:
        store = AIStore(pool, BOX)
        env = {"SWITCHBOARD_AI_ANTHROPIC_BASE_URL": anthropic.url, "SWITCHBOARD_AI_ANTHROPIC_API_KEY": "sk-ant-t"}
        engine = AIEngine(load_registry(env=env), store, ("local",), ProviderGate({}),
                          CircuitBreakers(threshold=2, cooldown_s=60), ResponseCache(0), timeout_s=5)
        yield engine, store, AIServicer(engine, store), anthropic


async def test_a_tenant_with_two_levels_gets_answers_and_settings_on_its_scale(service) -> None:
    engine, store, servicer, anthropic = service
    context = Context()
    shown = await servicer.GetSettings(pb.GetAISettingsRequest(tenant_id="t1"), context)
    assert list(shown.priority_levels) == list(BUILTIN_LEVELS)
    assert dict(shown.priority_mapping) == {level: level for level in BUILTIN_LEVELS}
    built_in = await engine.classify(CI_FAILED, lane="normal")
    assert (built_in.value.priority, built_in.value.priority_builtin) == ("high", "high")

    changed = await servicer.UpdateSettings(pb.UpdateAISettingsRequest(
        tenant_id="t1", priority_levels=["urgent", "normal"]), context)
    assert list(changed.priority_levels) == ["urgent", "normal"]
    assert dict(changed.priority_mapping) == default_mapping(["urgent", "normal"])
    answers = {}
    for name, event in (("outage", OUTAGE), ("ci", CI_FAILED), ("thanks", THANKS)):
        answer = await engine.classify(event, lane="normal")
        assert answer.provider == "local"
        answers[name] = (answer.value.priority, answer.value.priority_builtin)
    assert answers == {"outage": ("urgent", "urgent"), "ci": ("urgent", "high"), "thanks": ("normal", "low")}

    # A model provider answers on the built-in scale too, and its answer is folded the same way.
    await store.save_settings("t1", ("anthropic",), None)
    labels = {"category": "alert", "priority": "high", "sentiment": "negative", "confidence": 0.9,
              "summary": "CI failed on main"}
    anthropic.reply(anthropic_answer(labels))
    asked = await engine.classify(CI_FAILED, lane="normal")
    assert asked.provider == "anthropic"
    assert (asked.value.priority, asked.value.priority_builtin) == ("urgent", "high")
    classified = await servicer.Classify(pb.ClassifyRequest(event=pb.AIEvent(
        tenant_id="t1", source_type="twilio", event_type="message.received", payload_json='{"Body": "thanks!"}',
        text="thanks!")), context)
    assert classified.meta.provider == "local"  # the stand-in has no more answers: local answers
    assert (classified.priority, classified.priority_builtin) == ("normal", "low")

    # The router checks a route's priorities against the tenant's levels.
    conditions = AIConditions.parse({"priority": ["urgent"]})
    assert conditions is not None
    conditions.check_priorities(tuple(changed.priority_levels))
    with pytest.raises(InvalidRequest, match="priority levels \\(urgent, normal\\), not 'high'"):
        AIConditions.parse({"priority": ["urgent", "high"]}).check_priorities(  # type: ignore[union-attr]
            tuple(changed.priority_levels))


async def test_the_mapping_is_checked_kept_and_reset(service) -> None:
    _, store, servicer, _ = service
    context = Context()
    three = {"urgent": "p1", "high": "p2", "normal": "p2", "low": "p3"}
    changed = await servicer.UpdateSettings(pb.UpdateAISettingsRequest(
        tenant_id="t1", priority_levels=["p1", "p2", "p3"], priority_mapping=three), context)
    assert dict(changed.priority_mapping) == three
    with pytest.raises(Aborted, match="priority_mapping.low 'p4' is not one of priority_levels"):
        await servicer.UpdateSettings(pb.UpdateAISettingsRequest(
            tenant_id="t1", priority_mapping={**three, "low": "p4"}), context)
    with pytest.raises(Aborted, match="names 'p1' twice"):
        await servicer.UpdateSettings(pb.UpdateAISettingsRequest(tenant_id="t1", priority_levels=["p1", "p1"]),
                                      context)
    # Other changes keep the scale; new levels without a mapping get the default fold; [] the built-in scale.
    kept = await servicer.UpdateSettings(pb.UpdateAISettingsRequest(tenant_id="t1", providers=["local"]), context)
    assert (list(kept.priority_levels), dict(kept.priority_mapping)) == (["p1", "p2", "p3"], three)
    refolded = await servicer.UpdateSettings(pb.UpdateAISettingsRequest(
        tenant_id="t1", priority_levels=["hot", "cold"]), context)
    assert dict(refolded.priority_mapping) == {"urgent": "hot", "high": "hot", "normal": "cold", "low": "cold"}
    cleared = await servicer.UpdateSettings(pb.UpdateAISettingsRequest(
        tenant_id="t1", update_mask=FieldMask(paths=["priority_levels"])), context)
    assert list(cleared.priority_levels) == list(BUILTIN_LEVELS)
    assert (await store.settings("t1")).priority_levels == ()
